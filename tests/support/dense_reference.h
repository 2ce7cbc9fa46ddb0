// The dense one-hot formulation of an MoE layer, as fairseq's top1gating/top2gating and DeepSpeed
// write it: capacity slots by cumulative sums over one-hot masks, a [T, E, C] dispatch mask and
// combine tensor, and einsum dispatch/combine through fixed-capacity expert buffers. It shares no
// code with moe's layout/dispatch/combine, so it serves as their independent reference in the tests
// and as the baseline formulation in bench/.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <vector>

#include "moe/layers/expert_bank.h"
#include "moe/routing/router.h"

namespace moe::testing {

/// A [n] bool tensor from a std::vector<bool> (which at::tensor cannot take: it is a bitfield).
inline at::Tensor bool_mask(const std::vector<bool>& values) {
  auto out = at::zeros({static_cast<int64_t>(values.size())}, at::kBool);
  for (size_t i = 0; i < values.size(); ++i) out[static_cast<int64_t>(i)] = static_cast<bool>(values[i]);
  return out;
}

struct OneHotRouting {
  at::Tensor dispatch_mask;    ///< [T, E, C] in the weight's dtype, 1 where (token, expert) holds capacity slot c
  at::Tensor combine_weights;  ///< [T, E, C], the combine weight at the same places
  int64_t capacity = 0;        ///< C
};

/// Capacity slots in rank-major first-come-first-served order, computed with cumsum over one-hot
/// masks (fairseq: locations1 = cumsum(mask1) - 1; locations2 = cumsum(mask2) - 1 + sum(mask1)).
/// expert_index: [T, K] int64 (-1 = empty); weight: [T, K] raw router weights; capacity -1 = T.
/// normalization: applied over kept slots (kKept), selected slots (kSelected) or not at all (kNone).
OneHotRouting one_hot_routing(const at::Tensor& expert_index, const at::Tensor& weight, int64_t num_experts,
                              int64_t capacity, WeightNormalization normalization);

/// y = einsum("tec,ecd->td", combine, expert(einsum("tec,td->ecd", dispatch, x))), where expert e
/// runs on its whole [C, d] buffer (unused rows are zeros, as in the fixed-capacity formulation).
/// x: [T, d]. expert: (e, rows [C, d]) -> [C, d].
at::Tensor one_hot_moe(const at::Tensor& x, const OneHotRouting& routing,
                       const std::function<at::Tensor(int64_t, const at::Tensor&)>& expert);

/// The same with the experts' rows batched through one bmm per weight ([E, C, d] x [E, d, h]), the
/// way fairseq/DeepSpeed implementations that stack expert weights run them. relu/gelu/swiglu.
at::Tensor one_hot_moe_batched(const at::Tensor& x, const OneHotRouting& routing, ExpertBankImpl& bank);

}  // namespace moe::testing
