// Per-expert histogram of routing assignments (see expert_histogram.cuh).
#include "common/cuda_check.cuh"
#include "expert_histogram.cuh"

namespace moe::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxSharedExperts = 4096;

// Block-local histogram in shared memory, then one global atomic per (block, expert).
__global__ void expert_histogram_kernel(const int64_t* __restrict__ expert_index, int64_t n,
                                        int num_experts, unsigned long long* counts,
                                        unsigned long long* invalid) {
  __shared__ unsigned int local[kMaxSharedExperts];
  __shared__ unsigned int local_invalid;
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) local[e] = 0;
  if (threadIdx.x == 0) local_invalid = 0;
  __syncthreads();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t e = expert_index[i];
    if (e >= 0 && e < num_experts) {
      atomicAdd(&local[e], 1u);
    } else if (e != -1) {
      atomicAdd(&local_invalid, 1u);
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) {
    if (local[e] != 0) atomicAdd(&counts[e], static_cast<unsigned long long>(local[e]));
  }
  if (threadIdx.x == 0 && local_invalid != 0) {
    atomicAdd(invalid, static_cast<unsigned long long>(local_invalid));
  }
}

}  // namespace

cudaError_t launch_expert_histogram(const int64_t* expert_index, int64_t num_assignments,
                                    int64_t num_experts, int64_t* counts, int64_t* invalid,
                                    cudaStream_t stream) {
  if (num_experts <= 0 || num_experts > kMaxSharedExperts || num_assignments < 0) {
    return cudaErrorInvalidValue;
  }
  MOE_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(counts, 0, sizeof(int64_t) * num_experts, stream));
  MOE_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(invalid, 0, sizeof(int64_t), stream));
  if (num_assignments == 0) return cudaSuccess;
  const int64_t wanted = (num_assignments + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(wanted < 1024 ? wanted : 1024);
  static_assert(sizeof(unsigned long long) == sizeof(int64_t), "int64 counters");
  expert_histogram_kernel<<<blocks, kThreads, 0, stream>>>(
      expert_index, num_assignments, static_cast<int>(num_experts),
      reinterpret_cast<unsigned long long*>(counts), reinterpret_cast<unsigned long long*>(invalid));
  return cudaGetLastError();
}

}  // namespace moe::kernels
