// DispatchLayout: where every (token, slot) assignment of a routing decision goes in the packed,
// expert-contiguous buffer. Built once per layer call by a stable counting sort by expert id that
// applies per-expert capacity in the decision's priority order; reused by dispatch, combine, the
// expert compute and their backward passes. See ARCHITECTURE.md, "The data path".
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace moe {

/// Packed rows are grouped by expert: rows expert_offsets[e] .. expert_offsets[e+1]-1 belong to
/// expert e, in priority order. N = number of kept assignments.
struct DispatchLayout {
  int64_t num_tokens = 0;   ///< T
  int64_t top_k = 0;        ///< K, slots per token
  int64_t num_experts = 0;  ///< E
  int64_t capacity = -1;    ///< rows kept per expert at most; -1 = unlimited

  // The per-expert counts are on the CPU for every layout: they size host-side work (the expert
  // GEMMs, the all-to-all splits). Everything else is on expert_index's device.
  at::Tensor tokens_per_expert;     ///< [E] int64 (CPU), rows kept per expert
  at::Tensor requested_per_expert;  ///< [E] int64 (CPU), assignments per expert before capacity
  at::Tensor expert_offsets;        ///< [E+1] int64, exclusive scan of tokens_per_expert
  at::Tensor row_token;             ///< [N] int64, source token of each packed row
  at::Tensor row_slot;              ///< [N] int64, source slot (0..K-1) of each packed row
  at::Tensor slot_row;              ///< [T, K] int64, packed row of each (token, slot); -1 = empty or dropped
  at::Tensor num_dropped;           ///< [] int64 (CPU), assignments dropped by capacity

  int64_t num_rows() const { return row_token.defined() ? row_token.size(0) : 0; }
};

/// Builds the layout of a routing decision.
///
/// expert_index: [T, K] int64, expert of each (token, slot) in [0, E), or -1 for an empty slot
///               (variable-k routers pad with -1). A token must not name the same expert twice.
/// num_experts:  E >= 1.
/// capacity:     rows kept per expert at most (>= 0), or -1 for no limit.
/// priority:     optional [T, K] floating tensor; assignments with a smaller value keep their place
///               first when an expert is over capacity. Ties, and the whole order when `priority`
///               is undefined, follow rank-major first-come-first-served (GShard): every slot-0
///               assignment in token order, then every slot-1 assignment, and so on.
///
/// Cost: O(T·K + E) without `priority`; O(T·K·log(T·K) + E) with it (one stable sort). Deterministic,
/// bit for bit, and the same layout on either device. CUDA tensors (CUDA tier) run the device kernels of
/// kernels/layout.cuh: T·K < 2^31, E <= 4096, and one device-to-host read of the [2E + 4] counts per
/// call (N sizes the packed buffer). Throws moe::Error for out-of-range ids, a token naming an expert
/// twice, or shape mismatches.
DispatchLayout build_layout(const at::Tensor& expert_index, int64_t num_experts, int64_t capacity,
                            const at::Tensor& priority = at::Tensor());

}  // namespace moe
