// Label-smoothed cross-entropy exactly as fairseq's label_smoothed_nll_loss (Szegedy et al. 2016,
// "Rethinking the Inception Architecture"): with ε_i = ε / (V − 1),
//   loss = (1 − ε − ε_i) · nll + ε_i · Σ_v (−log p_v)
// per target token, summed over non-padding tokens. Computed from log_softmax in fp32.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace moe {

struct LabelSmoothedLoss {
  at::Tensor loss;         ///< 0-dim fp32 (fp64 for fp64 logits), label-smoothed loss summed over the counted tokens
  at::Tensor nll;          ///< 0-dim, plain negative log-likelihood summed (for perplexity)
  at::Tensor num_tokens;   ///< 0-dim int64 on the logits' device: tokens counted (target != padding_idx)
};

/// logits: [..., V] floating; target: int64 of logits' leading shape; epsilon in [0, 1).
/// Tokens equal to padding_idx contribute nothing.
LabelSmoothedLoss label_smoothed_cross_entropy(const at::Tensor& logits, const at::Tensor& target, double epsilon,
                                               int64_t padding_idx);

}  // namespace moe
