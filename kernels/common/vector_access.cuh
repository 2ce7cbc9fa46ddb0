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

template <typename T, int N>
__device__ __forceinline__ void store_float(T* __restrict__ p, const float (&in)[N]) {
  Pack<T, N> pack;
#pragma unroll
  for (int i = 0; i < N; ++i) pack.v[i] = Convert<T>::from_float(in[i]);
  *reinterpret_cast<Pack<T, N>*>(p) = pack;
}

/// Threads that work on one row: a warp for short rows, up to 256 for long ones. Rows per 256-thread
/// block = 256 / group.
inline int threads_per_row(int64_t vectors_per_row) {
  if (vectors_per_row <= 32) return 32;
  if (vectors_per_row <= 64) return 64;
  if (vectors_per_row <= 256) return 128;
  return 256;
}

inline bool aligned_to(const void* p, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

}  // namespace moe::kernels::detail
