// THOR's consistency regulariser and two-pass training step (Zuo et al. 2022, "Taming Sparsely
// Activated Transformer with Stochastic Experts", official code thor/translation_thor.py), also
// R-Drop's when the model has one expert.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>

namespace moe {

enum class Reduction { kSum, kMean };

/// ½ · Σ_positions Σ_v [(Pa − Pb)(log Pa − log Pb)] = ½ [KL(Pa‖Pb) + KL(Pb‖Pa)] over non-padding
/// positions, from log_softmax in fp32 (fp64 for fp64 inputs), so it stays finite when
/// probabilities underflow (the official code takes log of probabilities and can produce NaN).
/// logits_a, logits_b: [..., V] floating, same shape. pad_mask: optional bool [...] (logits' shape
/// without V), true = padding, excluded. kSum sums over positions (to be added to a summed
/// cross-entropy, as THOR does); kMean divides by the number of non-padding positions.
/// Returns a 0-dim tensor, differentiable with respect to both logits (no stop-gradient).
at::Tensor consistency_loss(const at::Tensor& logits_a, const at::Tensor& logits_b,
                            const at::Tensor& pad_mask = at::Tensor(), Reduction reduction = Reduction::kSum);

/// What one forward pass of the model returns to the two-pass step.
struct PassResult {
  at::Tensor logits;     ///< [..., V]
  at::Tensor task_loss;  ///< 0-dim, summed (not averaged) over the target tokens
  at::Tensor aux_loss;   ///< optional 0-dim, weighted, per-token scale (MoEStats::total_aux_loss() summed over layers)
};

struct ConsistencyStepOptions {
  double alpha = 1.0;  ///< weight of the consistency term (THOR default 1.0; its IWSLT script uses 5.0); >= 0
  void validate() const;
};

struct ConsistencyStepResult {
  at::Tensor loss;         ///< (task_a + task_b + α·consistency) / num_tokens + aux_a + aux_b; call backward() on it
  at::Tensor task_loss_a;  ///< summed task loss of each pass
  at::Tensor task_loss_b;
  at::Tensor consistency;  ///< summed consistency term (unweighted)
};

/// Runs `run_pass` twice and combines the losses as THOR's train_step does: both task losses plus
/// α · consistency, normalised once by num_tokens (not 2·num_tokens). Each call of run_pass must draw
/// its own routing and dropout, which stochastic routers and dropout do by advancing their random
/// generators. pad_mask as in consistency_loss. num_tokens >= 1.
ConsistencyStepResult consistency_training_step(const std::function<PassResult()>& run_pass,
                                                const at::Tensor& pad_mask, int64_t num_tokens,
                                                const ConsistencyStepOptions& options = {});

}  // namespace moe
