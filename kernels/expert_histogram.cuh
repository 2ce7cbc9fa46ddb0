// Per-expert histogram of routing assignments: the first step of building a DispatchLayout on the
// GPU (histogram -> exclusive scan -> stable row positions). Integer atomics, so the counts are
// deterministic. Padding slots (expert id -1) are skipped; ids outside [-1, num_experts) are
// counted in *invalid so that the caller can report them.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace moe::kernels {

/// expert_index: [num_assignments] int64 device pointer, -1 = empty slot.
/// counts: [num_experts] int64 device pointer, overwritten.
/// invalid: one int64 device counter, overwritten with the number of out-of-range ids.
cudaError_t launch_expert_histogram(const int64_t* expert_index, int64_t num_assignments,
                                    int64_t num_experts, int64_t* counts, int64_t* invalid,
                                    cudaStream_t stream);

}  // namespace moe::kernels
