// Router epilogue: fused softmax + selection on CUDA, ATen elsewhere (see moe/ops/router_epilogue.h).
#include "moe/ops/router_epilogue.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>
#include <limits>

#include "moe/core/build_config.h"
#include "moe/core/error.h"
#include "ops/device_check.h"
#if MOE_WITH_CUDA
#include "ops/cuda/ops_cuda.h"
#endif

namespace moe {
namespace {

void check_logits(const at::Tensor& logits, const char* op) {
  MOE_CHECK(logits.defined() && logits.dim() == 2, op, ": logits must be [T, E], got ",
            logits.defined() ? logits.sizes() : at::IntArrayRef{});
  MOE_CHECK(at::isFloatingType(logits.scalar_type()), op, ": logits must be floating, got ", logits.scalar_type());
  MOE_CHECK(logits.size(1) >= 1, op, ": logits must have at least one expert column");
  detail::check_op_device(logits, op, "logits");
}

void check_threshold(double threshold, const char* op) {
  MOE_CHECK(std::isfinite(threshold) && threshold > 0 && threshold <= 1, op, ": threshold must be in (0, 1], got ",
            threshold);
}

#if MOE_WITH_CUDA
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// probs from the fused kernel, with the softmax backward: dlogits = p ⊙ (dp − Σ_e p·dp).
// mode 0: top-k (arg = k); mode 1: threshold (arg = threshold). Outputs: probs, index[, count].
struct FusedSoftmaxSelect : public torch::autograd::Function<FusedSoftmaxSelect> {
  static tensor_list forward(AutogradContext* ctx, const at::Tensor& logits, int64_t mode, double arg) {
    tensor_list out;
    if (mode == 0) {
      auto [probs, index] = detail::cuda::softmax_topk(logits, static_cast<int64_t>(arg));
      out = {probs, index};
    } else {
      auto [probs, index, count] = detail::cuda::softmax_threshold(logits, arg);
      out = {probs, index, count};
    }
    ctx->save_for_backward({out[0]});
    for (size_t i = 1; i < out.size(); ++i) ctx->mark_non_differentiable({out[i]});
    return out;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto probs = ctx->get_saved_variables()[0];
    auto g = grads[0].defined() ? grads[0] : at::zeros_like(probs);
    auto grad_logits = probs * (g - (g * probs).sum(-1, /*keepdim=*/true));
    return {grad_logits, at::Tensor(), at::Tensor()};
  }
};
#endif

}  // namespace

bool router_epilogue_fused(const at::Tensor& logits, int64_t k) {
#if MOE_WITH_CUDA
  return logits.defined() && logits.is_cuda() && logits.dim() == 2 && logits.scalar_type() == at::kFloat &&
         logits.size(1) >= 1 && logits.size(1) <= 256 && k >= 1 && k <= 8 && k <= logits.size(1);
#else
  (void)logits;
  (void)k;
  return false;
#endif
}

RouterSelection softmax_topk(const at::Tensor& logits, int64_t k) {
  check_logits(logits, "softmax_topk");
  const int64_t E = logits.size(1);
  MOE_CHECK(k >= 1 && k <= E, "softmax_topk: k must be in [1, ", E, "], got ", k);
#if MOE_WITH_CUDA
  if (router_epilogue_fused(logits, k)) {
    auto out = FusedSoftmaxSelect::apply(logits, 0, static_cast<double>(k));
    return {out[0], out[1]};
  }
#endif
  RouterSelection s;
  s.probs = at::softmax(logits, -1);
  at::NoGradGuard no_grad;
  // The greedy loop (argmax takes the first of equal values): ties go to the lower expert id. -inf
  // logits are raised to the lowest finite value, so that masked picks (-inf) always lose.
  const double lowest = logits.scalar_type() == at::kDouble ? std::numeric_limits<double>::lowest()
                                                            : std::numeric_limits<float>::lowest();
  auto scores = logits.detach().clamp_min(lowest);
  std::vector<at::Tensor> picks;
  for (int64_t r = 0; r < k; ++r) {
    if (r > 0) scores.scatter_(1, picks.back(), -std::numeric_limits<double>::infinity());
    picks.push_back(scores.argmax(-1, /*keepdim=*/true));
  }
  s.index = at::cat(picks, 1);
  return s;
}

std::pair<at::Tensor, at::Tensor> threshold_select(const at::Tensor& probs, double threshold) {
  check_threshold(threshold, "threshold_select");
  MOE_CHECK(probs.dim() == 2, "threshold_select: probs must be [T, E], got ", probs.sizes());
  const int64_t T = probs.size(0), E = probs.size(1);
  auto [sorted, order] = probs.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true);
  // chosen[t, r] = cumsum before r < t (strict); rank 0 always.
  auto before = sorted.cumsum(1) - sorted;
  auto chosen = before.lt(threshold);
  if (E > 0) chosen.select(1, 0).fill_(true);
  const int64_t K = T == 0 ? 1 : std::max<int64_t>(1, chosen.sum(1).max().item<int64_t>());
  auto keep = chosen.narrow(1, 0, K);
  auto index = at::where(keep, order.narrow(1, 0, K), at::full({}, -1, order.options()));
  auto weight = at::where(keep, sorted.narrow(1, 0, K), at::zeros({}, sorted.options()));
  return {index, weight};
}

RouterSelection softmax_threshold(const at::Tensor& logits, double threshold) {
  check_logits(logits, "softmax_threshold");
  check_threshold(threshold, "softmax_threshold");
#if MOE_WITH_CUDA
  if (router_epilogue_fused(logits, 1)) {
    auto out = FusedSoftmaxSelect::apply(logits, 1, threshold);
    const int64_t T = logits.size(0);
    const int64_t K = T == 0 ? 1 : std::max<int64_t>(1, out[2].max().item<int64_t>());
    return {out[0], out[1].narrow(1, 0, K)};
  }
#endif
  RouterSelection s;
  s.probs = at::softmax(logits, -1);
  at::NoGradGuard no_grad;
  s.index = threshold_select(s.probs.detach(), threshold).first;
  return s;
}

}  // namespace moe
