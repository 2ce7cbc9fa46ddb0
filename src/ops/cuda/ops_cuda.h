// The CUDA glue of the ops (internal): tensor checks, the current stream and device, and calls into
// kernels/. Compiled into the library only with the CUDA tier (MOE_WITH_CUDA); the public ops
// (moe/ops/*.h) call these for CUDA tensors and throw "moe was built without CUDA support" otherwise.
// Every function expects CUDA tensors of the shapes its public op documents.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <utility>

#include "moe/ops/layout.h"

namespace moe::detail::cuda {

/// build_layout for a CUDA expert_index (see moe/ops/layout.h). Maps stay on the device; the one
/// device-to-host transfer is the [2E + 4] int64 summary (kept and requested per expert, N, dropped,
/// invalid ids, duplicates), read once because N sizes the packed buffer and the per-expert counts
/// size the expert GEMMs.
DispatchLayout build_layout(const at::Tensor& expert_index, int64_t num_experts, int64_t capacity,
                            const at::Tensor& priority);

/// [rows, d] = src[index]: dispatch forward. src: [*, d] fp32/bf16/fp16 contiguous; index: [rows] int64.
at::Tensor gather_rows(const at::Tensor& src, const at::Tensor& index);

/// [T, d] = Σ_k w[t, k] · src[slot_row[t, k]] in fp32, rounded to src's dtype: combine forward, and the
/// dispatch backward with weight undefined (w = 1).
at::Tensor gather_sum(const at::Tensor& src, const at::Tensor& slot_row, const at::Tensor& weight);

/// Combine backward: (grad_packed [N, d] in packed's dtype, grad_weight [T, K] fp32).
std::pair<at::Tensor, at::Tensor> combine_backward(const at::Tensor& grad_y, const at::Tensor& packed,
                                                   const at::Tensor& slot_row, const at::Tensor& weight);

/// Fused softmax + top-k: (probs [T, E] fp32, index [T, k] int64). logits: [T, E] fp32, E <= 256, k <= 8.
std::pair<at::Tensor, at::Tensor> softmax_topk(const at::Tensor& logits, int64_t k);

/// Fused softmax + threshold: (probs [T, E] fp32, index [T, E] int64 -1 padded, count [T] int64).
std::tuple<at::Tensor, at::Tensor, at::Tensor> softmax_threshold(const at::Tensor& logits, double threshold);

/// The compute capability's major version of the device that holds `t`.
int compute_capability_major(const at::Tensor& t);

}  // namespace moe::detail::cuda
