// CPU references of dispatch and combine, forward and backward, written with plain tensor ops.
// Short and obviously correct; the CUDA kernels (issue 5) are tested against these.
#pragma once

#include <ATen/core/Tensor.h>

#include <utility>

namespace moe::detail {

/// The dtype in which combine and the dispatch backward accumulate: fp32, or fp64 if any input is fp64.
c10::ScalarType accumulate_dtype(const at::Tensor& a, const at::Tensor& b);

/// [N, d] = x[row_token].
at::Tensor dispatch_reference(const at::Tensor& x, const at::Tensor& row_token);

/// [T, d] = Σ_k grad_packed[slot_row[t, k]] (kept slots), accumulated in `acc`, returned in grad_packed's dtype.
at::Tensor dispatch_backward_reference(const at::Tensor& grad_packed, const at::Tensor& slot_row);

/// [T, d] = Σ_k weight[t, k] · packed[slot_row[t, k]], accumulated in fp32/fp64, returned in packed's dtype.
at::Tensor combine_reference(const at::Tensor& packed, const at::Tensor& slot_row, const at::Tensor& weight);

/// (grad_packed [N, d] in packed's dtype, grad_weight [T, K] in weight's dtype).
std::pair<at::Tensor, at::Tensor> combine_backward_reference(const at::Tensor& grad_y,
                                                             const at::Tensor& packed,
                                                             const at::Tensor& slot_row,
                                                             const at::Tensor& row_token,
                                                             const at::Tensor& row_slot,
                                                             const at::Tensor& weight);

}  // namespace moe::detail
