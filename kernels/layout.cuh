// DispatchLayout on the device: a stable counting sort of the (token, slot) assignments of a routing
// decision by expert id, with per-expert capacity applied in priority order. The same function as the
// CPU build_layout (moe/ops/layout.h), bit for bit:
//
//   1. visit order: rank-major first-come-first-served (f = k·T + t; GShard), or, with a priority, a
//      stable radix sort of the rank-major flattening by priority (smaller first; ties keep FCFS)
//   2. per-expert histogram of requests (integer atomics: deterministic), invalid ids and tokens that
//      name one expert twice counted for the caller to report
//   3. a stable radix sort of the visit order by expert id (CUB, LSD: stable and deterministic)
//   4. one block scans kept = min(requested, capacity) into expert offsets
//   5. a scatter: the j-th request of expert e in visit order lands in row offsets[e] + j if
//      j < kept[e], else it is dropped
//
// Nothing crosses to the host here and nothing synchronises: every count stays on the device, in
// `summary`. The caller decides what to read back (the glue reads the summary once, because the row
// count N sizes the packed buffer and the per-expert GEMMs).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#ifdef __CUDACC__
#define MOE_HOST_DEVICE __host__ __device__
#else
#define MOE_HOST_DEVICE
#endif

namespace moe::kernels {

/// Layout of `summary` ([layout_summary_size(E)] int64).
struct LayoutSummary {
  static constexpr int64_t kKept = 0;  ///< [E] rows kept per expert, then [E] requested per expert
  MOE_HOST_DEVICE static int64_t requested(int64_t num_experts) { return num_experts; }
  MOE_HOST_DEVICE static int64_t rows(int64_t num_experts) { return 2 * num_experts; }        ///< N, rows kept in all
  MOE_HOST_DEVICE static int64_t dropped(int64_t num_experts) { return 2 * num_experts + 1; }  ///< requests over capacity
  MOE_HOST_DEVICE static int64_t invalid(int64_t num_experts) { return 2 * num_experts + 2; }  ///< ids outside [-1, E)
  MOE_HOST_DEVICE static int64_t duplicates(int64_t num_experts) { return 2 * num_experts + 3; }  ///< (t, k<k') same expert
  MOE_HOST_DEVICE static int64_t size(int64_t num_experts) { return 2 * num_experts + 4; }
};

/// Scratch bytes launch_build_layout needs for T·K assignments and E experts.
/// Returns 0 and sets *error on invalid sizes.
std::size_t layout_workspace_bytes(int64_t num_tokens, int64_t top_k, int64_t num_experts, bool with_priority,
                                   cudaError_t* error);

/// expert_index: [T, K] int64 device, expert of each (token, slot) or -1 for an empty slot.
/// priority:     [T, K] fp64 device or null (rank-major first-come-first-served).
/// capacity:     rows kept per expert at most, or -1 for no limit.
/// Outputs (device): row_token, row_slot [T·K] int64 (the first N entries are written), slot_row
/// [T, K] int64 (-1 where empty or dropped), expert_offsets [E + 1] int64, summary
/// [LayoutSummary::size(E)] int64. T·K must be below 2^31; E at most 4096.
cudaError_t launch_build_layout(const int64_t* expert_index, const double* priority, int64_t num_tokens,
                                int64_t top_k, int64_t num_experts, int64_t capacity, void* workspace,
                                std::size_t workspace_bytes, int64_t* row_token, int64_t* row_slot, int64_t* slot_row,
                                int64_t* expert_offsets, int64_t* summary, cudaStream_t stream);

}  // namespace moe::kernels
