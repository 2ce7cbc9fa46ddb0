// Dispatch (permute-gather of token rows into the expert-contiguous packed buffer) and combine
// (weighted gather-sum of expert outputs back to tokens), forward and backward, for a DispatchLayout
// built on the device (layout.cuh). Every kernel is a gather: each output element has one writer and
// sums run in a fixed slot order, so results are deterministic, bit for bit, with no atomics.
//
// Accesses are 16 bytes wide per thread whenever the row size and the base pointers allow it (d a
// multiple of 8 for bf16/fp16, of 4 for fp32); otherwise the same kernels run element by element.
// Sums accumulate in fp32 and round once to the output dtype.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common/dtype.h"

namespace moe::kernels {

/// dst[r, :] = src[index[r], :] for r in [0, rows): a row copy, dtype-blind.
/// src: [*, row_bytes / elem] device rows; dst: [rows, ...]; index: [rows] int64 device, each a valid
/// row of src. row_bytes: bytes per row (> 0 when rows > 0).
cudaError_t launch_gather_rows(const void* src, void* dst, const int64_t* index, int64_t rows,
                               int64_t row_bytes, cudaStream_t stream);

/// out[t, :] = Σ_k w[t, k] · src[slot_row[t, k], :] over k in [0, K) with slot_row[t, k] >= 0; rows
/// of tokens with no kept slot are written as zeros. w = 1 when weight is null (dispatch backward).
/// src: [N, d] dtype; slot_row: [T, K] int64; weight: [T, K] fp32 or null; out: [T, d] dtype.
cudaError_t launch_gather_sum(DType dtype, const void* src, const int64_t* slot_row, const float* weight,
                              int64_t tokens, int64_t top_k, int64_t d, void* out, cudaStream_t stream);

/// Combine backward. For every kept slot (t, k) with r = slot_row[t, k]:
///   grad_src[r, :]   = weight[t, k] · grad_out[t, :]   (rounded to dtype)
///   grad_weight[t,k] = <grad_out[t, :], src[r, :]>     (fp32 accumulation)
/// and grad_weight[t, k] = 0 for empty or dropped slots. Every packed row is the target of exactly one
/// kept slot (a DispatchLayout guarantees this), so grad_src is fully written.
/// grad_out: [T, d] dtype; src: [N, d] dtype; slot_row: [T, K] int64; weight: [T, K] fp32;
/// grad_src: [N, d] dtype; grad_weight: [T, K] fp32.
cudaError_t launch_combine_backward(DType dtype, const void* grad_out, const void* src, const int64_t* slot_row,
                                    const float* weight, int64_t tokens, int64_t top_k, int64_t d,
                                    void* grad_src, float* grad_weight, cudaStream_t stream);

}  // namespace moe::kernels
