// dispatch (permute-gather of token rows into the expert-contiguous packed buffer) and combine
// (weighted gather-sum of expert outputs back to tokens), as autograd functions with explicit,
// deterministic backward passes: gather-sums over the layout's maps, no atomics and no
// order-dependent accumulation; and the normalisation of combine weights once capacity is known.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "moe/ops/layout.h"

namespace moe {

/// packed[r] = x[layout.row_token[r]].
/// x: [T, d] floating (fp32, fp64, bf16, fp16), T == layout.num_tokens. Returns [N, d], x's dtype.
/// Backward: dx[t] = Σ_k dpacked[slot_row[t, k]] over kept slots, accumulated in fp32 (fp64 for fp64).
at::Tensor dispatch(const at::Tensor& x, const DispatchLayout& layout);

/// y[t] = Σ_k weight[t, k] · packed_out[slot_row[t, k]] over kept slots; tokens with no kept slot get 0.
/// packed_out: [N, d] floating, N == layout.num_rows().
/// weight:     [T, K] floating (usually fp32 from the router); dropped and empty slots are ignored.
/// Returns [T, d] in packed_out's dtype, accumulated in fp32 (fp64 when an input is fp64).
/// Backward: dpacked_out[r] = weight[t, k] · dy[t] with (t, k) = (row_token[r], row_slot[r]);
///           dweight[t, k] = <dy[t], packed_out[slot_row[t, k]]> (0 for dropped and empty slots).
at::Tensor combine(const at::Tensor& packed_out, const DispatchLayout& layout, const at::Tensor& weight);

/// How the combine weights of a token's slots are normalised.
enum class WeightNormalization {
  kAuto,      ///< resolved by the router: kNone for top_k = 1 (Switch), kKept for top_k >= 2 (GShard)
  kNone,      ///< raw router probabilities (Switch, XMoE)
  kSelected,  ///< divided by their sum over the selected slots, before capacity drops
  kKept,      ///< divided by their sum over the slots that survive capacity (GShard/fairseq default)
};
/// Parses auto | none | selected | kept; throws moe::Error otherwise.
WeightNormalization parse_weight_normalization(const std::string& name);
std::string to_string(WeightNormalization normalization);

/// The combine weights once the layout is known (GShard renormalises over the experts that survived
/// capacity, so this runs after build_layout and before combine).
/// weight: [T, K] floating; selected: [T, K] bool, true where the slot names an expert;
/// kept: [T, K] bool, true where the slot survived capacity (layout.slot_row >= 0).
/// Returns [T, K] in weight's dtype; dropped and empty slots get 0. kKept and kSelected divide by
/// max(sum, eps) with eps the dtype's epsilon (fairseq), so a token with nothing kept gets zeros.
at::Tensor normalize_combine_weights(const at::Tensor& weight, const at::Tensor& selected, const at::Tensor& kept,
                                     WeightNormalization normalization);

}  // namespace moe
