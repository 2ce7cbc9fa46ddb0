// DispatchLayout kernels (see layout.cuh).
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include "common/cuda_check.cuh"
#include "expert_histogram.cuh"
#include "layout.cuh"

namespace moe::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxExperts = 4096;
constexpr int kScanThreads = 1024;
constexpr int kScanItems = kMaxExperts / kScanThreads;  // experts per scan thread

int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 4096 ? (blocks < 1 ? 1 : blocks) : 4096);
}

int bits_for(int64_t max_value) {
  int bits = 1;
  while ((int64_t{1} << bits) <= max_value) ++bits;
  return bits;
}

// Scratch carved out of one workspace allocation.
struct Workspace {
  double* prio_in = nullptr;
  double* prio_out = nullptr;
  int32_t* order_in = nullptr;
  int32_t* order_out = nullptr;
  uint32_t* keys_in = nullptr;
  uint32_t* keys_out = nullptr;
  int32_t* visit_sorted = nullptr;
  int64_t* request_offsets = nullptr;  // [E + 1]
  void* cub_temp = nullptr;
  std::size_t cub_bytes = 0;
  std::size_t total = 0;
};

std::size_t align_up(std::size_t x) { return (x + 255) & ~std::size_t{255}; }

cudaError_t plan_workspace(int64_t n, int64_t num_experts, bool with_priority, char* base, Workspace* ws) {
  std::size_t cub_prio = 0, cub_keys = 0;
  const int count = static_cast<int>(n);
  if (with_priority) {
    MOE_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(nullptr, cub_prio, static_cast<const double*>(nullptr),
                                                             static_cast<double*>(nullptr),
                                                             static_cast<const int32_t*>(nullptr),
                                                             static_cast<int32_t*>(nullptr), count));
  }
  MOE_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(nullptr, cub_keys, static_cast<const uint32_t*>(nullptr),
                                                           static_cast<uint32_t*>(nullptr),
                                                           static_cast<const int32_t*>(nullptr),
                                                           static_cast<int32_t*>(nullptr), count, 0,
                                                           bits_for(num_experts)));
  std::size_t at = 0;
  auto take = [&](std::size_t bytes) {
    char* p = base ? base + at : nullptr;
    at += align_up(bytes);
    return p;
  };
  const std::size_t un = static_cast<std::size_t>(n);
  if (with_priority) {
    ws->prio_in = reinterpret_cast<double*>(take(un * sizeof(double)));
    ws->prio_out = reinterpret_cast<double*>(take(un * sizeof(double)));
  }
  ws->order_in = reinterpret_cast<int32_t*>(take(un * sizeof(int32_t)));
  ws->order_out = reinterpret_cast<int32_t*>(take(un * sizeof(int32_t)));
  ws->keys_in = reinterpret_cast<uint32_t*>(take(un * sizeof(uint32_t)));
  ws->keys_out = reinterpret_cast<uint32_t*>(take(un * sizeof(uint32_t)));
  ws->visit_sorted = reinterpret_cast<int32_t*>(take(un * sizeof(int32_t)));
  ws->request_offsets = reinterpret_cast<int64_t*>(take((static_cast<std::size_t>(num_experts) + 1) * sizeof(int64_t)));
  ws->cub_bytes = cub_prio > cub_keys ? cub_prio : cub_keys;
  ws->cub_temp = take(ws->cub_bytes);
  ws->total = at;
  return cudaSuccess;
}

// Rank-major flattening: entry f = k·T + t holds (token t, slot k).
__global__ void priority_keys_kernel(const double* __restrict__ priority, int64_t T, int64_t K,
                                     double* __restrict__ keys, int32_t* __restrict__ order) {
  const int64_t n = T * K;
  for (int64_t f = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; f < n;
       f += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = f / T, t = f - k * T;
    // One NaN (positive, canonical) so that every NaN sorts last and stays in FCFS order, as in
    // torch.sort; CUB would order NaNs by sign and payload.
    const double p = priority[t * K + k];
    keys[f] = isnan(p) ? __longlong_as_double(0x7ff8000000000000LL) : p;
    order[f] = static_cast<int32_t>(f);
  }
}

// keys[i] = expert of the i-th visited assignment (E for empty slots and invalid ids).
__global__ void expert_keys_kernel(const int64_t* __restrict__ expert_index, const int32_t* __restrict__ visit,
                                   int64_t T, int64_t K, int64_t E, uint32_t* __restrict__ keys,
                                   int32_t* __restrict__ order) {
  const int64_t n = T * K;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t f = visit ? visit[i] : i;
    const int64_t k = f / T, t = f - k * T;
    const int64_t e = expert_index[t * K + k];
    keys[i] = static_cast<uint32_t>(e >= 0 && e < E ? e : E);
    if (!visit) order[i] = static_cast<int32_t>(f);
  }
}

// Tokens that name one expert in two slots (O(T·K²), K is small).
__global__ void duplicate_kernel(const int64_t* __restrict__ expert_index, int64_t T, int64_t K,
                                 unsigned long long* duplicates) {
  unsigned int local = 0;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < T;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t* row = expert_index + t * K;
    for (int64_t a = 0; a < K; ++a) {
      const int64_t e = row[a];
      if (e < 0) continue;
      for (int64_t b = a + 1; b < K; ++b) local += (row[b] == e) ? 1u : 0u;
    }
  }
  if (local) atomicAdd(duplicates, static_cast<unsigned long long>(local));
}

// One block: kept = min(requested, capacity), exclusive scans of kept and requested, N and dropped.
__global__ void __launch_bounds__(kScanThreads) scan_kernel(int64_t E, int64_t capacity, int64_t* __restrict__ summary,
                                                           int64_t* __restrict__ expert_offsets,
                                                           int64_t* __restrict__ request_offsets) {
  using Scan = cub::BlockScan<int64_t, kScanThreads>;
  __shared__ typename Scan::TempStorage temp_kept;
  __shared__ typename Scan::TempStorage temp_req;
  const int64_t* requested = summary + LayoutSummary::requested(E);
  int64_t kept_items[kScanItems], req_items[kScanItems];
  int64_t kept_sum = 0, req_sum = 0;
#pragma unroll
  for (int i = 0; i < kScanItems; ++i) {
    const int64_t e = static_cast<int64_t>(threadIdx.x) * kScanItems + i;
    const int64_t r = e < E ? requested[e] : 0;
    const int64_t k = capacity < 0 ? r : (r < capacity ? r : capacity);
    kept_items[i] = k;
    req_items[i] = r;
    kept_sum += k;
    req_sum += r;
  }
  int64_t kept_base = 0, req_base = 0, kept_total = 0, req_total = 0;
  Scan(temp_kept).ExclusiveSum(kept_sum, kept_base, kept_total);
  Scan(temp_req).ExclusiveSum(req_sum, req_base, req_total);
#pragma unroll
  for (int i = 0; i < kScanItems; ++i) {
    const int64_t e = static_cast<int64_t>(threadIdx.x) * kScanItems + i;
    if (e < E) {
      summary[LayoutSummary::kKept + e] = kept_items[i];
      expert_offsets[e] = kept_base;
      request_offsets[e] = req_base;
    }
    kept_base += kept_items[i];
    req_base += req_items[i];
  }
  if (threadIdx.x == 0) {
    expert_offsets[E] = kept_total;
    request_offsets[E] = req_total;
    summary[LayoutSummary::rows(E)] = kept_total;
    summary[LayoutSummary::dropped(E)] = req_total - kept_total;
  }
}

__global__ void scatter_kernel(const uint32_t* __restrict__ keys, const int32_t* __restrict__ order, int64_t T,
                               int64_t K, int64_t E, const int64_t* __restrict__ summary,
                               const int64_t* __restrict__ expert_offsets, const int64_t* __restrict__ request_offsets,
                               int64_t* __restrict__ row_token, int64_t* __restrict__ row_slot,
                               int64_t* __restrict__ slot_row) {
  const int64_t n = T * K;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = keys[i];
    if (e >= E) continue;
    const int64_t j = i - request_offsets[e];
    if (j >= summary[LayoutSummary::kKept + e]) continue;  // over capacity: dropped
    const int64_t row = expert_offsets[e] + j;
    const int64_t f = order[i];
    const int64_t k = f / T, t = f - k * T;
    row_token[row] = t;
    row_slot[row] = k;
    slot_row[t * K + k] = row;
  }
}

}  // namespace

std::size_t layout_workspace_bytes(int64_t num_tokens, int64_t top_k, int64_t num_experts, bool with_priority,
                                   cudaError_t* error) {
  *error = cudaSuccess;
  if (num_tokens < 0 || top_k < 0 || num_experts < 1 || num_experts > kMaxExperts ||
      num_tokens * top_k >= (int64_t{1} << 31)) {
    *error = cudaErrorInvalidValue;
    return 0;
  }
  Workspace ws;
  *error = plan_workspace(num_tokens * top_k, num_experts, with_priority, nullptr, &ws);
  return ws.total;
}

cudaError_t launch_build_layout(const int64_t* expert_index, const double* priority, int64_t T, int64_t K, int64_t E,
                                int64_t capacity, void* workspace, std::size_t workspace_bytes, int64_t* row_token,
                                int64_t* row_slot, int64_t* slot_row, int64_t* expert_offsets, int64_t* summary,
                                cudaStream_t stream) {
  cudaError_t err = cudaSuccess;
  const std::size_t needed = layout_workspace_bytes(T, K, E, priority != nullptr, &err);
  MOE_CUDA_RETURN_IF_ERROR(err);
  if (workspace_bytes < needed || capacity < -1) return cudaErrorInvalidValue;
  const int64_t n = T * K;
  Workspace ws;
  MOE_CUDA_RETURN_IF_ERROR(plan_workspace(n, E, priority != nullptr, static_cast<char*>(workspace), &ws));

  MOE_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(summary, 0, sizeof(int64_t) * LayoutSummary::size(E), stream));
  if (n > 0) MOE_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(slot_row, 0xff, sizeof(int64_t) * n, stream));  // -1
  // Requests per expert and invalid ids.
  MOE_CUDA_RETURN_IF_ERROR(launch_expert_histogram(expert_index, n, E, summary + LayoutSummary::requested(E),
                                                   summary + LayoutSummary::invalid(E), stream));
  if (n > 0) {
    if (K > 1) {
      duplicate_kernel<<<grid_for(T), kThreads, 0, stream>>>(
          expert_index, T, K, reinterpret_cast<unsigned long long*>(summary + LayoutSummary::duplicates(E)));
      MOE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    }
    const int32_t* visit = nullptr;
    if (priority) {
      priority_keys_kernel<<<grid_for(n), kThreads, 0, stream>>>(priority, T, K, ws.prio_in, ws.order_in);
      MOE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
      std::size_t bytes = ws.cub_bytes;
      MOE_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(ws.cub_temp, bytes, ws.prio_in, ws.prio_out,
                                                               ws.order_in, ws.visit_sorted, static_cast<int>(n), 0,
                                                               64, stream));
      visit = ws.visit_sorted;
    }
    expert_keys_kernel<<<grid_for(n), kThreads, 0, stream>>>(expert_index, visit, T, K, E, ws.keys_in,
                                                             priority ? nullptr : ws.order_in);
    MOE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    std::size_t bytes = ws.cub_bytes;
    MOE_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(ws.cub_temp, bytes, ws.keys_in, ws.keys_out,
                                                             priority ? visit : ws.order_in, ws.order_out,
                                                             static_cast<int>(n), 0, bits_for(E), stream));
  }
  scan_kernel<<<1, kScanThreads, 0, stream>>>(E, capacity, summary, expert_offsets, ws.request_offsets);
  MOE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  if (n > 0) {
    scatter_kernel<<<grid_for(n), kThreads, 0, stream>>>(ws.keys_out, ws.order_out, T, K, E, summary, expert_offsets,
                                                         ws.request_offsets, row_token, row_slot, slot_row);
    MOE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  return cudaSuccess;
}

}  // namespace moe::kernels
