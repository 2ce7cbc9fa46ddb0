// Device helpers shared by the row kernels: packs of N elements loaded and stored as one access
// (16 bytes when N * sizeof(T) == 16), and fp32 conversions for fp32, bf16 and fp16.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace moe::kernels::detail {

template <typename T>
struct Convert;
template <>
struct Convert<float> {
  static __device__ __forceinline__ float to_float(float v) { return v; }
  static __device__ __forceinline__ float from_float(float v) { return v; }
};
template <>
struct Convert<__nv_bfloat16> {
  static __device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
};
template <>
struct Convert<__half> {
  static __device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half from_float(float v) { return __float2half_rn(v); }
};

/// N elements of T moved as one access of N * sizeof(T) bytes (a power of two up to 16).
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ void load_float(const T* __restrict__ p, float (&out)[N]) {
  const Pack<T, N> pack = *reinterpret_cast<const Pack<T, N>*>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = Convert<T>::to_float(pack.v[i]);
}

// Two 16-bit values packed into one 32-bit word (round to nearest even), low half first.
template <typename T>
__device__ __forceinline__ uint32_t pack_pair(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack_pair<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack_pair<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

template <typename T, int N>
__device__ __forceinline__ void store_float(T* __restrict__ p, const float (&in)[N]) {
  if constexpr (sizeof(T) == 2 && N % 2 == 0) {
    // Built as 32-bit words so that the compiler emits one N·2-byte store (it splits a pack of
    // 16-bit elements into narrower stores otherwise).
    Pack<uint32_t, N / 2> words;
#pragma unroll
    for (int i = 0; i < N / 2; ++i) words.v[i] = pack_pair<T>(in[2 * i], in[2 * i + 1]);
    *reinterpret_cast<Pack<uint32_t, N / 2>*>(p) = words;
  } else {
    Pack<T, N> pack;
#pragma unroll
    for (int i = 0; i < N; ++i) pack.v[i] = Convert<T>::from_float(in[i]);
    *reinterpret_cast<Pack<T, N>*>(p) = pack;
  }
}

/// Threads that work on one row: a warp for short rows, up to 256 for long ones. Rows per 256-thread
/// block = 256 / group.
inline int threads_per_row(int64_t vectors_per_row) {
  if (vectors_per_row <= 32) return 32;
  if (vectors_per_row <= 64) return 64;
  if (vectors_per_row <= 256) return 128;
  return 256;
}

/// Threads per row such that each thread has about `per_thread` packs of the row (so that its
/// unrolled loop keeps that many loads in flight): a power of two in [32, 256].
inline int threads_per_row_for(int64_t vectors_per_row, int64_t per_thread) {
  int group = 32;
  while (group < 256 && static_cast<int64_t>(group) * per_thread < vectors_per_row) group *= 2;
  return group;
}

inline bool aligned_to(const void* p, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

}  // namespace moe::kernels::detail
