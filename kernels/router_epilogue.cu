// Fused router epilogue kernels (see router_epilogue.cuh).
#include <cfloat>

#include "common/cuda_check.cuh"
#include "router_epilogue.cuh"

namespace moe::kernels {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kPerLane = kEpilogueMaxExperts / 32;

// Lane l holds experts l, l + 32, l + 64, ...: loads of one slot index are coalesced.
struct TokenRow {
  float logit[kPerLane];
  float prob[kPerLane];
  bool taken[kPerLane];
};

__device__ __forceinline__ void load_softmax(const float* __restrict__ logits, int64_t t, int E, int lane,
                                             float* __restrict__ probs, TokenRow& row) {
  const float* in = logits + t * E;
  float m = -FLT_MAX;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    row.logit[i] = e < E ? in[e] : -FLT_MAX;
    row.taken[i] = e >= E;
    m = fmaxf(m, row.logit[i]);
  }
  for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    row.prob[i] = e < E ? expf(row.logit[i] - m) : 0.f;
    s += row.prob[i];
  }
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  const float inv = 1.f / s;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    row.prob[i] *= inv;
    if (e < E) probs[t * E + e] = row.prob[i];
  }
}

// a ranks before b: larger first, NaN above everything (torch.argmax's order), then the lower id.
// kNone (no candidate) ranks after every expert, so an untaken expert is always chosen, -inf too.
constexpr int kNone = 0x7fffffff;
__device__ __forceinline__ bool ranks_before(float a, int ea, float b, int eb) {
  if (ea == kNone) return false;
  if (eb == kNone) return true;
  const bool na = isnan(a), nb = isnan(b);
  if (na != nb) return na;
  if (!na && a != b) return a > b;
  return ea < eb;
}

// Warp argmax over the experts not yet taken, by logit (kByProb = false) or probability; every lane
// returns the winner and its probability, and the owning lane marks it taken.
template <bool kByProb>
__device__ __forceinline__ int take_best(TokenRow& row, int lane, float* best_prob) {
  float best = 0.f;
  int best_e = kNone;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const float v = kByProb ? row.prob[i] : row.logit[i];
    const int e = lane + 32 * i;
    if (!row.taken[i] && ranks_before(v, e, best, best_e)) {
      best = v;
      best_e = e;
    }
  }
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, off);
    const int oe = __shfl_xor_sync(0xffffffffu, best_e, off);
    if (ranks_before(ov, oe, best, best_e)) {
      best = ov;
      best_e = oe;
    }
  }
  float p = 0.f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    if (lane + 32 * i == best_e) {
      row.taken[i] = true;
      p = row.prob[i];
    }
  }
  *best_prob = __shfl_sync(0xffffffffu, p, best_e % 32);
  return best_e;
}

__global__ void __launch_bounds__(kWarpsPerBlock * 32) softmax_topk_kernel(const float* __restrict__ logits, int64_t T,
                                                                         int E, int K, float* __restrict__ probs,
                                                                         int64_t* __restrict__ index) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (t >= T) return;
  const int lane = threadIdx.x % 32;
  TokenRow row;
  load_softmax(logits, t, E, lane, probs, row);
  for (int k = 0; k < K; ++k) {
    float p;
    const int e = take_best<false>(row, lane, &p);
    if (lane == 0) index[t * K + k] = e;
  }
}

__global__ void __launch_bounds__(kWarpsPerBlock * 32) softmax_threshold_kernel(const float* __restrict__ logits,
                                                                              int64_t T, int E, float threshold,
                                                                              float* __restrict__ probs,
                                                                              int64_t* __restrict__ index,
                                                                              int64_t* __restrict__ count) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (t >= T) return;
  const int lane = threadIdx.x % 32;
  TokenRow row;
  load_softmax(logits, t, E, lane, probs, row);
  double running = 0.0;  // ATen's CPU cumsum accumulates fp32 in fp64
  int chosen = 0;
  for (int r = 0; r < E; ++r) {
    float p;
    const int e = take_best<true>(row, lane, &p);
    running += static_cast<double>(p);
    const float before = static_cast<float>(running) - p;  // cumsum(sorted) - sorted, in fp32
    if (r > 0 && !(before < threshold)) break;
    if (lane == 0) index[t * E + r] = e;
    ++chosen;
  }
  for (int r = chosen + lane; r < E; r += 32) index[t * E + r] = -1;
  if (lane == 0) count[t] = chosen;
}

int blocks_for(int64_t T) { return static_cast<int>((T + kWarpsPerBlock - 1) / kWarpsPerBlock); }

}  // namespace

cudaError_t launch_softmax_topk(const float* logits, int64_t T, int64_t E, int64_t K, float* probs, int64_t* index,
                                cudaStream_t stream) {
  if (T < 0 || E < 1 || E > kEpilogueMaxExperts || K < 1 || K > kEpilogueMaxTopK || K > E) {
    return cudaErrorInvalidValue;
  }
  if (T == 0) return cudaSuccess;
  if (T > (int64_t{1} << 31) * kWarpsPerBlock / 2) return cudaErrorInvalidValue;
  softmax_topk_kernel<<<blocks_for(T), kWarpsPerBlock * 32, 0, stream>>>(logits, T, static_cast<int>(E),
                                                                         static_cast<int>(K), probs, index);
  return cudaGetLastError();
}

cudaError_t launch_softmax_threshold(const float* logits, int64_t T, int64_t E, double threshold, float* probs,
                                     int64_t* index, int64_t* count, cudaStream_t stream) {
  if (T < 0 || E < 1 || E > kEpilogueMaxExperts || !(threshold > 0.0 && threshold <= 1.0)) {
    return cudaErrorInvalidValue;
  }
  if (T == 0) return cudaSuccess;
  if (T > (int64_t{1} << 31) * kWarpsPerBlock / 2) return cudaErrorInvalidValue;
  softmax_threshold_kernel<<<blocks_for(T), kWarpsPerBlock * 32, 0, stream>>>(
      logits, T, static_cast<int>(E), static_cast<float>(threshold), probs, index, count);
  return cudaGetLastError();
}

}  // namespace moe::kernels
