// XMoE threshold router (see moe/routing/threshold_router.h).
#include "moe/routing/threshold_router.h"

#include <ATen/ATen.h>

#include <cmath>

#include "moe/core/error.h"
#include "moe/routing/losses.h"

namespace moe {
ThresholdRouterImpl::ThresholdRouterImpl(const RouterOptions& options) : RouterImpl(options) {
  options_.validate();  // threshold in (0, 1], eval_threshold -1 or in (0, 1]
  if (options_.normalization == WeightNormalization::kAuto) options_.normalization = WeightNormalization::kNone;
  weight = register_router_weight();
}

void ThresholdRouterImpl::reset_parameters() { reset_router_weight(weight); }

void ThresholdRouterImpl::set_threshold(double threshold) {
  auto changed = options_;
  changed.threshold = threshold;
  changed.validate("ThresholdRouter");
  options_ = changed;
}

RoutingPlan ThresholdRouterImpl::route_impl(const at::Tensor& hidden, const RoutingContext& context) {
  const int64_t T = hidden.size(0), E = options_.num_experts;
  auto logits = router_logits(hidden, weight);
  const double t = (!is_training() && options_.eval_threshold > 0) ? options_.eval_threshold : options_.threshold;
  // Fused softmax + selection on CUDA (moe/ops/router_epilogue.h), ATen elsewhere.
  auto selection = softmax_threshold(logits, t);
  auto probs = selection.probs;
  auto index = selection.index;
  const int64_t K = index.size(1);
  RoutingPlan plan;
  plan.expert_index = index;
  // Gather the differentiable probabilities; padded slots read expert 0 and are zeroed.
  plan.weight = at::where(index.ge(0), probs.gather(1, index.clamp_min(0)), at::zeros({}, probs.options()));
  plan.normalization = options_.normalization;
  plan.capacity = compute_capacity(options_.capacity, T, E, /*top_k=*/1, is_training());
  // Rank first (every rank-0 assignment before any rank-1), then higher probability.
  auto rank = at::arange(K, probs.options().dtype(at::kDouble)).unsqueeze(0).expand({T, K});
  plan.priority = rank * 2.0 + (1.0 - plan.weight.detach().to(at::kDouble));
  auto top1 = index.select(1, 0);
  plan.aux_losses["balance"] =
      AuxLoss{load_balancing_loss(probs, top1, mask_padding(context)), options_.balance_loss_coef};
  if (options_.z_loss_coef > 0) plan.aux_losses["z"] = AuxLoss{router_z_loss(logits), options_.z_loss_coef};
  return plan;
}

}  // namespace moe
