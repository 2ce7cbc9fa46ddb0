// Grouped GEMM over the contiguous expert segments of a packed buffer: every group of rows times its
// own weight matrix, forward and backward, as one autograd function.
//
//   kGroupedMM: at::_grouped_mm (CUTLASS grouped GEMM in LibTorch; bf16 on sm_90), one launch per
//               product for all experts, group offsets on the device.
//   kPerGroup:  one cuBLAS (or CPU BLAS) GEMM per non-empty group, written in place into the output.
// kAuto picks kGroupedMM for CUDA bf16 operands on sm_90/sm_100 whose widths are multiples of 8, else
// kPerGroup. kGroupedMM asked for explicitly runs anywhere LibTorch runs at::_grouped_mm (on the CPU,
// its reference loop: how the CPU tests check this path's backward). Should LibTorch reject a
// grouped product at run time, that product runs per group instead: the first time with a warning,
// every time counted by grouped_gemm_fallbacks().
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace moe {

enum class GroupedGemmBackend { kAuto, kGroupedMM, kPerGroup };
GroupedGemmBackend parse_grouped_gemm_backend(const std::string& name);  ///< "auto", "grouped_mm", "per_group"
std::string to_string(GroupedGemmBackend backend);

/// y[rows of group g] = x[rows of g] · weight[g] (+ bias[g]).
/// x:          [N, in] floating; rows grouped by g in order.
/// weight:     [G, in, out], x's dtype and device.
/// bias:       [G, out] or undefined.
/// group_rows: G row counts (host), summing to N; zeros allowed.
/// Returns [N, out] in x's dtype. Gradients flow to x, weight and bias; empty groups get zero weight
/// and bias gradients.
at::Tensor grouped_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                          const std::vector<int64_t>& group_rows,
                          GroupedGemmBackend backend = GroupedGemmBackend::kAuto);

/// The backend kAuto resolves to for these operands (never kAuto).
GroupedGemmBackend resolve_grouped_gemm_backend(const at::Tensor& x, const at::Tensor& weight);

/// Grouped products that LibTorch rejected and that ran per group instead, since the process started.
int64_t grouped_gemm_fallbacks();

}  // namespace moe
