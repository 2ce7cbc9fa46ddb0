// Dispatch and combine kernels (see permute.cuh).
#include "common/cuda_check.cuh"
#include "common/vector_access.cuh"
#include "permute.cuh"

#include <algorithm>

namespace moe::kernels {
namespace {

using detail::Convert;
using detail::load_float;
using detail::store_float;

constexpr int kBlock = 256;
constexpr int kMaxGrid = 1 << 30;

// ---- row copy ------------------------------------------------------------------------------------
// One group of G threads per row; V is the access type (16, 8, 4, 2 or 1 bytes).
template <typename V>
__global__ void __launch_bounds__(kBlock) gather_rows_kernel(const V* __restrict__ src, V* __restrict__ dst,
                                                             const int64_t* __restrict__ index, int64_t rows,
                                                             int64_t vectors, int group) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kBlock / group) + threadIdx.x / group;
  if (row >= rows) return;
  const int lane = threadIdx.x % group;
  const V* in = src + index[row] * vectors;
  V* out = dst + row * vectors;
  int64_t v = lane;
  // Four independent loads in flight before the first store.
  for (; v + 3 * group < vectors; v += 4 * group) {
    const V a = in[v], b = in[v + group], c = in[v + 2 * group], e = in[v + 3 * group];
    out[v] = a;
    out[v + group] = b;
    out[v + 2 * group] = c;
    out[v + 3 * group] = e;
  }
  for (; v < vectors; v += group) out[v] = in[v];
}

template <typename V>
cudaError_t gather_rows_as(const void* src, void* dst, const int64_t* index, int64_t rows, int64_t row_bytes,
                           cudaStream_t stream) {
  const int64_t vectors = row_bytes / static_cast<int64_t>(sizeof(V));
  const int group = detail::threads_per_row(vectors);
  const int64_t blocks = (rows + kBlock / group - 1) / (kBlock / group);
  if (blocks > kMaxGrid) return cudaErrorInvalidValue;
  gather_rows_kernel<V><<<static_cast<unsigned>(blocks), kBlock, 0, stream>>>(
      static_cast<const V*>(src), static_cast<V*>(dst), index, rows, vectors, group);
  return cudaGetLastError();
}

// ---- weighted gather-sum -------------------------------------------------------------------------
// Each thread sums kUnroll packs of its row at once, so kUnroll·K independent loads are in flight
// before the first accumulation; the remainder of the row runs one pack at a time.
constexpr int kUnroll = 4;

template <typename T, int N>
__device__ __forceinline__ void gather_sum_packs(const T* __restrict__ src, const int64_t* __restrict__ rows,
                                                 const float* __restrict__ w, int top_k, int64_t d, int64_t v0,
                                                 int64_t step, int count, T* __restrict__ out_row) {
  float acc[kUnroll][N];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u)
#pragma unroll
    for (int i = 0; i < N; ++i) acc[u][i] = 0.f;
  for (int k = 0; k < top_k; ++k) {
    const int64_t r = rows[k];
    if (r < 0) continue;
    const float scale = w ? w[k] : 1.f;
    const T* in = src + r * d;
    float x[kUnroll][N];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (u < count) load_float<T, N>(in + (v0 + u * step) * N, x[u]);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (u < count)
#pragma unroll
        for (int i = 0; i < N; ++i) acc[u][i] = fmaf(scale, x[u][i], acc[u][i]);
  }
#pragma unroll
  for (int u = 0; u < kUnroll; ++u)
    if (u < count) store_float<T, N>(out_row + (v0 + u * step) * N, acc[u]);
}

template <typename T, int N>
__global__ void __launch_bounds__(kBlock) gather_sum_kernel(const T* __restrict__ src,
                                                            const int64_t* __restrict__ slot_row,
                                                            const float* __restrict__ weight, int64_t tokens,
                                                            int top_k, int64_t d, T* __restrict__ out, int group) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * (kBlock / group) + threadIdx.x / group;
  if (t >= tokens) return;
  const int lane = threadIdx.x % group;
  const int64_t* rows = slot_row + t * top_k;
  const float* w = weight ? weight + t * top_k : nullptr;
  const int64_t vectors = d / N;
  T* out_row = out + t * d;
  int64_t v = lane;
  for (; v + (kUnroll - 1) * group < vectors; v += kUnroll * group) {
    gather_sum_packs<T, N>(src, rows, w, top_k, d, v, group, kUnroll, out_row);
  }
  for (; v < vectors; v += group) gather_sum_packs<T, N>(src, rows, w, top_k, d, v, group, 1, out_row);
}

template <typename T, int N>
cudaError_t gather_sum_as(const void* src, const int64_t* slot_row, const float* weight, int64_t tokens,
                          int64_t top_k, int64_t d, void* out, cudaStream_t stream) {
  const int group = detail::threads_per_row_for(d / N, kUnroll);
  const int64_t blocks = (tokens + kBlock / group - 1) / (kBlock / group);
  if (blocks > kMaxGrid) return cudaErrorInvalidValue;
  gather_sum_kernel<T, N><<<static_cast<unsigned>(blocks), kBlock, 0, stream>>>(
      static_cast<const T*>(src), slot_row, weight, tokens, static_cast<int>(top_k), d, static_cast<T*>(out), group);
  return cudaGetLastError();
}

// ---- combine backward ----------------------------------------------------------------------------
// Slots are handled C at a time (C = 2 for k <= 2, else 4): the C partial dot products live in
// registers (compile-time indices) while grad_out's row streams through once per chunk; then one
// reduction over the row's threads. Each thread takes P = 2 packs per iteration, so 2 + 2·C
// independent loads are in flight. (A chunk of 8 at k = 8 needed 80 registers with P = 1 and ran at
// 73-75 % of the copy rate on an H200; two chunks of 4 at 74 registers, re-reading grad_out's row,
// ran at 85-86 %: docs/cuda-kernels.md, measurement log.)
template <typename T, int N, int C, int P>
__global__ void __launch_bounds__(kBlock) combine_backward_kernel(
    const T* __restrict__ grad_out, const T* __restrict__ src, const int64_t* __restrict__ slot_row,
    const float* __restrict__ weight, int64_t tokens, int top_k, int64_t d, T* __restrict__ grad_src,
    float* __restrict__ grad_weight, int group) {
  static_assert(C <= 8 && (P == 1 || P == 2), "chunk of at most 8 slots, one or two packs");
  __shared__ float partial[kBlock / 32][C];
  const int rows_per_block = kBlock / group;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * rows_per_block + threadIdx.x / group;
  const bool active = t < tokens;
  const int lane = threadIdx.x % group;
  const int warp = threadIdx.x / 32;
  const int warps_per_row = group / 32;
  const int64_t vectors = d / N;
  const int64_t* rows = slot_row + (active ? t : 0) * top_k;
  const float* w = weight + (active ? t : 0) * top_k;
  for (int k0 = 0; k0 < top_k; k0 += C) {
    float dot[C];
    int64_t r[C];
    float scale[C];
#pragma unroll
    for (int j = 0; j < C; ++j) {
      dot[j] = 0.f;
      r[j] = (active && k0 + j < top_k) ? rows[k0 + j] : -1;
      scale[j] = r[j] >= 0 ? w[k0 + j] : 0.f;
    }
    if (active) {
      for (int64_t v = lane; v < vectors; v += P * group) {
        const bool two = P == 2 && v + group < vectors;
        float g0[N], g1[N];
        load_float<T, N>(grad_out + t * d + v * N, g0);
        if (two) load_float<T, N>(grad_out + t * d + (v + group) * N, g1);
#pragma unroll
        for (int j = 0; j < C; ++j) {
          if (r[j] < 0) continue;
          const T* in = src + r[j] * d;
          T* out = grad_src + r[j] * d;
          float x0[N], x1[N], o[N];
          load_float<T, N>(in + v * N, x0);
          if (two) load_float<T, N>(in + (v + group) * N, x1);
#pragma unroll
          for (int i = 0; i < N; ++i) {
            dot[j] = fmaf(g0[i], x0[i], dot[j]);
            o[i] = scale[j] * g0[i];
          }
          store_float<T, N>(out + v * N, o);
          if (two) {
#pragma unroll
            for (int i = 0; i < N; ++i) {
              dot[j] = fmaf(g1[i], x1[i], dot[j]);
              o[i] = scale[j] * g1[i];
            }
            store_float<T, N>(out + (v + group) * N, o);
          }
        }
      }
    }
    // Reduce the partial dots over the row's threads: within each warp by shuffles, then across the
    // row's warps through shared memory (groups are whole warps, so every lane takes part).
#pragma unroll
    for (int j = 0; j < C; ++j) {
      for (int off = 16; off > 0; off >>= 1) dot[j] += __shfl_xor_sync(0xffffffffu, dot[j], off);
    }
    if (warps_per_row > 1) {
      if (threadIdx.x % 32 == 0) {
#pragma unroll
        for (int j = 0; j < C; ++j) partial[warp][j] = dot[j];
      }
      __syncthreads();
      if (lane == 0) {
        const int first = warp;  // lane 0 of a row is in the row's first warp
#pragma unroll
        for (int j = 0; j < C; ++j) {
          float sum = 0.f;
          for (int q = 0; q < warps_per_row; ++q) sum += partial[first + q][j];
          dot[j] = sum;
        }
      }
      __syncthreads();
    }
    if (active && lane == 0) {
#pragma unroll
      for (int j = 0; j < C; ++j) {
        if (k0 + j < top_k) grad_weight[t * top_k + k0 + j] = r[j] >= 0 ? dot[j] : 0.f;
      }
    }
  }
}

template <typename T, int N, int C, int P>
cudaError_t combine_backward_chunked(const void* grad_out, const void* src, const int64_t* slot_row,
                                     const float* weight, int64_t tokens, int64_t top_k, int64_t d, void* grad_src,
                                     float* grad_weight, cudaStream_t stream) {
  const int group = detail::threads_per_row_for(d / N, 2 * P);
  const int64_t blocks = (tokens + kBlock / group - 1) / (kBlock / group);
  if (blocks > kMaxGrid) return cudaErrorInvalidValue;
  combine_backward_kernel<T, N, C, P><<<static_cast<unsigned>(blocks), kBlock, 0, stream>>>(
      static_cast<const T*>(grad_out), static_cast<const T*>(src), slot_row, weight, tokens, static_cast<int>(top_k),
      d, static_cast<T*>(grad_src), grad_weight, group);
  return cudaGetLastError();
}

template <typename T, int N>
cudaError_t combine_backward_as(const void* grad_out, const void* src, const int64_t* slot_row, const float* weight,
                                int64_t tokens, int64_t top_k, int64_t d, void* grad_src, float* grad_weight,
                                cudaStream_t stream) {
  if (top_k <= 2)
    return combine_backward_chunked<T, N, 2, 2>(grad_out, src, slot_row, weight, tokens, top_k, d, grad_src,
                                                grad_weight, stream);
  if (top_k <= 4)
    return combine_backward_chunked<T, N, 4, 2>(grad_out, src, slot_row, weight, tokens, top_k, d, grad_src,
                                                grad_weight, stream);
  return combine_backward_chunked<T, N, 4, 2>(grad_out, src, slot_row, weight, tokens, top_k, d, grad_src,
                                              grad_weight, stream);
}

// 16-byte packs when d and every base pointer allow them, else one element at a time.
template <typename T>
bool can_pack16(int64_t d, std::initializer_list<const void*> pointers) {
  constexpr int64_t n = 16 / sizeof(T);
  if (d % n != 0) return false;
  for (const void* p : pointers)
    if (p && !detail::aligned_to(p, 16)) return false;
  return true;
}

template <typename Fn>
cudaError_t by_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32: return fn(float{});
    case DType::kBFloat16: return fn(__nv_bfloat16{});
    case DType::kFloat16: return fn(__half{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t launch_gather_rows(const void* src, void* dst, const int64_t* index, int64_t rows, int64_t row_bytes,
                               cudaStream_t stream) {
  if (rows < 0 || row_bytes < 0) return cudaErrorInvalidValue;
  if (rows == 0 || row_bytes == 0) return cudaSuccess;
  auto fits = [&](int64_t width) {
    return row_bytes % width == 0 && detail::aligned_to(src, width) && detail::aligned_to(dst, width);
  };
  if (fits(16)) return gather_rows_as<uint4>(src, dst, index, rows, row_bytes, stream);
  if (fits(8)) return gather_rows_as<uint2>(src, dst, index, rows, row_bytes, stream);
  if (fits(4)) return gather_rows_as<uint32_t>(src, dst, index, rows, row_bytes, stream);
  if (fits(2)) return gather_rows_as<uint16_t>(src, dst, index, rows, row_bytes, stream);
  return gather_rows_as<uint8_t>(src, dst, index, rows, row_bytes, stream);
}

cudaError_t launch_gather_sum(DType dtype, const void* src, const int64_t* slot_row, const float* weight,
                              int64_t tokens, int64_t top_k, int64_t d, void* out, cudaStream_t stream) {
  if (tokens < 0 || top_k < 0 || d < 0) return cudaErrorInvalidValue;
  if (tokens == 0 || d == 0) return cudaSuccess;
  return by_dtype(dtype, [&](auto zero) -> cudaError_t {
    using T = decltype(zero);
    constexpr int kPack = 16 / sizeof(T);
    if (can_pack16<T>(d, {src, out}))
      return gather_sum_as<T, kPack>(src, slot_row, weight, tokens, top_k, d, out, stream);
    return gather_sum_as<T, 1>(src, slot_row, weight, tokens, top_k, d, out, stream);
  });
}

cudaError_t launch_combine_backward(DType dtype, const void* grad_out, const void* src, const int64_t* slot_row,
                                    const float* weight, int64_t tokens, int64_t top_k, int64_t d, void* grad_src,
                                    float* grad_weight, cudaStream_t stream) {
  if (tokens < 0 || top_k < 0 || d < 0) return cudaErrorInvalidValue;
  if (tokens == 0 || top_k == 0) return cudaSuccess;
  return by_dtype(dtype, [&](auto zero) -> cudaError_t {
    using T = decltype(zero);
    constexpr int kPack = 16 / sizeof(T);
    if (can_pack16<T>(d, {grad_out, src, grad_src}))
      return combine_backward_as<T, kPack>(grad_out, src, slot_row, weight, tokens, top_k, d, grad_src, grad_weight,
                                           stream);
    return combine_backward_as<T, 1>(grad_out, src, slot_row, weight, tokens, top_k, d, grad_src, grad_weight,
                                     stream);
  });
}

}  // namespace moe::kernels
