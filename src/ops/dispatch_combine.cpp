// dispatch and combine: argument checks, device selection and the autograd wiring (see
// moe/ops/dispatch_combine.h). CPU tensors, and fp64 on either device, run the ATen references;
// fp32/bf16/fp16 CUDA tensors run the gather kernels of kernels/permute.cuh (CUDA tier).
#include "moe/ops/dispatch_combine.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <limits>

#include "moe/core/build_config.h"
#include "moe/core/error.h"
#include "ops/device_check.h"
#include "ops/dispatch_combine_reference.h"
#if MOE_WITH_CUDA
#include "ops/cuda/ops_cuda.h"
#endif

namespace moe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

void check_layout(const DispatchLayout& layout, const char* op) {
  MOE_CHECK(layout.slot_row.defined() && layout.row_token.defined(), op,
            ": the layout is empty; build it with build_layout()");
}

void check_floating_2d(const at::Tensor& t, const char* op, const char* name) {
  MOE_CHECK(t.defined(), op, ": ", name, " is undefined");
  MOE_CHECK(t.dim() == 2, op, ": ", name, " must be 2-D, got shape ", t.sizes());
  MOE_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", name, " must be floating, got ", t.scalar_type());
  detail::check_op_device(t, op, name);
}

void check_same_device(const at::Tensor& t, const at::Tensor& map, const char* op, const char* name) {
  MOE_CHECK(t.device() == map.device(), op, ": ", name, " is on ", t.device(), " but the layout is on ", map.device());
}

#if MOE_WITH_CUDA
// The kernels take fp32/bf16/fp16 data (and fp32 weights); fp64 stays on the references.
bool use_kernels(const at::Tensor& data, const at::Tensor& weight = at::Tensor()) {
  const auto t = data.scalar_type();
  return data.is_cuda() && (t == at::kFloat || t == at::kBFloat16 || t == at::kHalf) &&
         (!weight.defined() || weight.scalar_type() != at::kDouble);
}
#endif

struct DispatchFunction : public torch::autograd::Function<DispatchFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& row_token,
                            const at::Tensor& slot_row) {
    ctx->save_for_backward({slot_row});
#if MOE_WITH_CUDA
    if (use_kernels(x)) return detail::cuda::gather_rows(x, row_token);
#endif
    return detail::dispatch_reference(x, row_token);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto slot_row = ctx->get_saved_variables()[0];
    auto grad = grads[0].contiguous();
#if MOE_WITH_CUDA
    if (use_kernels(grad)) return {detail::cuda::gather_sum(grad, slot_row, at::Tensor()), at::Tensor(), at::Tensor()};
#endif
    return {detail::dispatch_backward_reference(grad, slot_row), at::Tensor(), at::Tensor()};
  }
};

struct CombineFunction : public torch::autograd::Function<CombineFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& packed, const at::Tensor& weight,
                            const at::Tensor& slot_row, const at::Tensor& row_token, const at::Tensor& row_slot) {
    ctx->save_for_backward({packed, weight, slot_row, row_token, row_slot});
#if MOE_WITH_CUDA
    if (use_kernels(packed, weight)) return detail::cuda::gather_sum(packed, slot_row, weight);
#endif
    return detail::combine_reference(packed, slot_row, weight);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
#if MOE_WITH_CUDA
    if (use_kernels(saved[0], saved[1])) {
      auto [grad_packed, grad_weight] = detail::cuda::combine_backward(grads[0], saved[0], saved[2], saved[1]);
      return {grad_packed, grad_weight.to(saved[1].scalar_type()), at::Tensor(), at::Tensor(), at::Tensor()};
    }
#endif
    auto [grad_packed, grad_weight] =
        detail::combine_backward_reference(grads[0].contiguous(), saved[0], saved[2], saved[3], saved[4], saved[1]);
    return {grad_packed, grad_weight, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor dispatch(const at::Tensor& x, const DispatchLayout& layout) {
  check_layout(layout, "dispatch");
  check_floating_2d(x, "dispatch", "x");
  MOE_CHECK(x.size(0) == layout.num_tokens, "dispatch: x has ", x.size(0), " rows but the layout has ",
            layout.num_tokens, " tokens");
  check_same_device(x, layout.row_token, "dispatch", "x");
  return DispatchFunction::apply(x, layout.row_token, layout.slot_row);
}

at::Tensor combine(const at::Tensor& packed_out, const DispatchLayout& layout, const at::Tensor& weight) {
  check_layout(layout, "combine");
  check_floating_2d(packed_out, "combine", "packed_out");
  check_floating_2d(weight, "combine", "weight");
  MOE_CHECK(packed_out.size(0) == layout.num_rows(), "combine: packed_out has ", packed_out.size(0),
            " rows but the layout has ", layout.num_rows());
  MOE_CHECK(weight.size(0) == layout.num_tokens && weight.size(1) == layout.top_k, "combine: weight must be [",
            layout.num_tokens, ", ", layout.top_k, "], got ", weight.sizes());
  check_same_device(packed_out, layout.row_token, "combine", "packed_out");
  check_same_device(weight, layout.row_token, "combine", "weight");
  return CombineFunction::apply(packed_out, weight, layout.slot_row, layout.row_token, layout.row_slot);
}

// ---- combine weights ---------------------------------------------------------------------------

WeightNormalization parse_weight_normalization(const std::string& name) {
  if (name == "auto") return WeightNormalization::kAuto;
  if (name == "none") return WeightNormalization::kNone;
  if (name == "selected") return WeightNormalization::kSelected;
  if (name == "kept") return WeightNormalization::kKept;
  MOE_THROW("weight normalization must be one of auto, none, selected, kept; got '", name, "'");
}

std::string to_string(WeightNormalization normalization) {
  switch (normalization) {
    case WeightNormalization::kAuto: return "auto";
    case WeightNormalization::kNone: return "none";
    case WeightNormalization::kSelected: return "selected";
    case WeightNormalization::kKept: return "kept";
  }
  return "?";
}

at::Tensor normalize_combine_weights(const at::Tensor& weight, const at::Tensor& selected, const at::Tensor& kept,
                                     WeightNormalization normalization) {
  MOE_CHECK(weight.sizes() == kept.sizes() && weight.sizes() == selected.sizes(), "normalize_combine_weights: weight ",
            weight.sizes(), ", selected ", selected.sizes(), " and kept ", kept.sizes(), " must have the same shape");
  MOE_CHECK(kept.scalar_type() == at::kBool && selected.scalar_type() == at::kBool,
            "normalize_combine_weights: selected and kept must be bool, got ", selected.scalar_type(), " and ",
            kept.scalar_type());
  MOE_CHECK(normalization != WeightNormalization::kAuto,
            "normalize_combine_weights: 'auto' must be resolved by the router first");
  auto zero = at::zeros({}, weight.options());
  auto kept_weight = at::where(kept, weight, zero);
  if (normalization == WeightNormalization::kNone) return kept_weight;
  const double eps = weight.scalar_type() == at::kDouble ? std::numeric_limits<double>::epsilon()
                                                         : std::numeric_limits<float>::epsilon();
  if (normalization == WeightNormalization::kKept) {
    return kept_weight / kept_weight.sum(-1, /*keepdim=*/true).clamp_min(eps);
  }
  // kSelected: normalise over every selected slot, then zero the dropped ones (fairseq
  // normalize_gate_prob_before_dropping=True).
  return kept_weight / at::where(selected, weight, zero).sum(-1, /*keepdim=*/true).clamp_min(eps);
}

}  // namespace moe
