// Grouped GEMM over expert segments (see moe/ops/grouped_gemm.h).
#include "moe/ops/grouped_gemm.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <atomic>

#include "moe/core/logging.h"
#include "moe/core/build_config.h"
#include "moe/core/error.h"
#include "ops/device_check.h"
#if MOE_WITH_CUDA
#include "ops/cuda/ops_cuda.h"
#endif

namespace moe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

std::atomic<int64_t> g_fallbacks{0};

struct Groups {
  std::vector<int64_t> rows;
  std::vector<int64_t> starts;
  at::Tensor offsets;  // [G] int32 on the device: cumulative row ends (grouped_mm only)
};

Groups make_groups(const std::vector<int64_t>& rows, const at::Tensor& like, bool device_offsets) {
  Groups g;
  g.rows = rows;
  int64_t at_row = 0;
  std::vector<int32_t> ends;
  for (int64_t n : rows) {
    g.starts.push_back(at_row);
    at_row += n;
    ends.push_back(static_cast<int32_t>(at_row));
  }
  if (device_offsets) {
    g.offsets = at::tensor(ends, at::TensorOptions().dtype(at::kInt)).to(like.device(), /*non_blocking=*/true);
  }
  return g;
}

// Runs `grouped` and, should LibTorch reject it, `per_group` instead (counted, warned once).
template <typename A, typename B>
at::Tensor grouped_or_fallback(bool use_grouped, A&& grouped, B&& per_group) {
  if (use_grouped) {
    try {
      return grouped();
    } catch (const c10::AcceleratorError&) {
      throw;  // a device fault is not a rejected operand
    } catch (const c10::Error& e) {
      if (g_fallbacks.fetch_add(1) == 0) {
        log_warn(std::string("grouped_linear: at::_grouped_mm rejected the operands; using one GEMM per group "
                             "instead: ") +
                 e.what_without_backtrace());
      }
    }
  }
  return per_group();
}

at::Tensor forward_product(const at::Tensor& x, const at::Tensor& w, const Groups& g, bool grouped) {
  return grouped_or_fallback(
      grouped, [&] { return at::_grouped_mm(x, w, g.offsets); },
      [&] {
        auto y = at::empty({x.size(0), w.size(2)}, x.options());
        for (size_t e = 0; e < g.rows.size(); ++e) {
          if (g.rows[e] == 0) continue;
          auto out = y.narrow(0, g.starts[e], g.rows[e]);
          at::mm_out(out, x.narrow(0, g.starts[e], g.rows[e]), w[static_cast<int64_t>(e)]);
        }
        return y;
      });
}

void add_bias(at::Tensor& y, const at::Tensor& bias, const Groups& g) {
  for (size_t e = 0; e < g.rows.size(); ++e) {
    if (g.rows[e] > 0) y.narrow(0, g.starts[e], g.rows[e]).add_(bias[static_cast<int64_t>(e)]);
  }
}

struct GroupedLinearFunction : public torch::autograd::Function<GroupedLinearFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, std::vector<int64_t> rows, bool grouped) {
    auto g = make_groups(rows, x, grouped);
    auto y = forward_product(x, weight, g, grouped);
    const bool has_bias = bias.numel() > 0;  // an empty placeholder otherwise (see grouped_linear)
    if (has_bias) add_bias(y, bias, g);
    ctx->save_for_backward({x, weight});
    if (grouped) ctx->saved_data["offsets"] = g.offsets;  // uploaded once, reused by the backward
    ctx->saved_data["rows"] = rows;
    ctx->saved_data["grouped"] = grouped;
    ctx->saved_data["has_bias"] = has_bias;
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    const auto rows = ctx->saved_data["rows"].toIntVector();
    const bool grouped = ctx->saved_data["grouped"].toBool();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    auto g = make_groups(rows, x, /*device_offsets=*/false);
    if (grouped) g.offsets = ctx->saved_data["offsets"].toTensor();
    auto dy = grads[0].contiguous();
    // dx = dy · w[g]^T per group.
    auto dx = forward_product(dy, w.transpose(1, 2), g, grouped);
    // dw[g] = x_g^T · dy_g; groups without rows get zeros.
    auto dw = grouped_or_fallback(
        grouped,
        [&] {
          auto out = at::_grouped_mm(x.t(), dy, g.offsets);
          for (size_t e = 0; e < rows.size(); ++e)
            if (rows[e] == 0) out[static_cast<int64_t>(e)].zero_();
          return out;
        },
        [&] {
          auto out = at::zeros_like(w);
          for (size_t e = 0; e < rows.size(); ++e) {
            if (rows[e] == 0) continue;
            auto slot = out[static_cast<int64_t>(e)];
            at::mm_out(slot, x.narrow(0, g.starts[e], rows[e]).t(), dy.narrow(0, g.starts[e], rows[e]));
          }
          return out;
        });
    at::Tensor db;
    if (has_bias) {
      db = at::zeros({w.size(0), w.size(2)}, w.options());
      const auto acc = dy.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
      for (size_t e = 0; e < rows.size(); ++e) {
        if (rows[e] == 0) continue;
        db[static_cast<int64_t>(e)].copy_(dy.narrow(0, g.starts[e], rows[e]).sum(0, false, acc));
      }
    }
    return {dx, dw, db, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

GroupedGemmBackend parse_grouped_gemm_backend(const std::string& name) {
  if (name == "auto") return GroupedGemmBackend::kAuto;
  if (name == "grouped_mm") return GroupedGemmBackend::kGroupedMM;
  if (name == "per_group") return GroupedGemmBackend::kPerGroup;
  throw Error("grouped GEMM backend must be one of auto, grouped_mm, per_group; got '" + name + "'");
}

std::string to_string(GroupedGemmBackend backend) {
  switch (backend) {
    case GroupedGemmBackend::kAuto: return "auto";
    case GroupedGemmBackend::kGroupedMM: return "grouped_mm";
    case GroupedGemmBackend::kPerGroup: return "per_group";
  }
  return "?";
}

GroupedGemmBackend resolve_grouped_gemm_backend(const at::Tensor& x, const at::Tensor& weight) {
#if MOE_WITH_CUDA
  if (x.is_cuda() && x.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16 &&
      x.size(1) % 8 == 0 && weight.size(2) % 8 == 0) {
    const int major = detail::cuda::compute_capability_major(x);
    if (major == 9 || major == 10) return GroupedGemmBackend::kGroupedMM;
  }
#else
  (void)x;
  (void)weight;
#endif
  return GroupedGemmBackend::kPerGroup;
}

int64_t grouped_gemm_fallbacks() { return g_fallbacks.load(); }

at::Tensor grouped_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                          const std::vector<int64_t>& group_rows, GroupedGemmBackend backend) {
  MOE_CHECK(x.defined() && x.dim() == 2, "grouped_linear: x must be [N, in], got ",
            x.defined() ? x.sizes() : at::IntArrayRef{});
  MOE_CHECK(weight.defined() && weight.dim() == 3 && weight.size(1) == x.size(1), "grouped_linear: weight must be [G, ",
            x.size(1), ", out], got ", weight.defined() ? weight.sizes() : at::IntArrayRef{});
  MOE_CHECK(weight.scalar_type() == x.scalar_type() && weight.device() == x.device(), "grouped_linear: weight is ",
            weight.scalar_type(), " on ", weight.device(), " but x is ", x.scalar_type(), " on ", x.device());
  detail::check_op_device(x, "grouped_linear", "x");
  const int64_t G = weight.size(0);
  MOE_CHECK(static_cast<int64_t>(group_rows.size()) == G, "grouped_linear: group_rows has ", group_rows.size(),
            " entries but weight has ", G, " groups");
  int64_t total = 0;
  for (size_t e = 0; e < group_rows.size(); ++e) {
    MOE_CHECK(group_rows[e] >= 0, "grouped_linear: group_rows[", e, "] = ", group_rows[e], " is negative");
    total += group_rows[e];
  }
  MOE_CHECK(total == x.size(0), "grouped_linear: group_rows sums to ", total, " but x has ", x.size(0), " rows");
  if (bias.defined()) {
    MOE_CHECK(bias.dim() == 2 && bias.size(0) == G && bias.size(1) == weight.size(2), "grouped_linear: bias must be [",
              G, ", ", weight.size(2), "], got ", bias.sizes());
  }
  if (backend == GroupedGemmBackend::kAuto) backend = resolve_grouped_gemm_backend(x, weight);
  // Autograd functions take no undefined tensors: a bias-free call passes an empty placeholder.
  return GroupedLinearFunction::apply(x.contiguous(), weight, bias.defined() ? bias : x.new_empty({0}), group_rows,
                                      backend == GroupedGemmBackend::kGroupedMM);
}

}  // namespace moe
