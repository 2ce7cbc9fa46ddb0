// Expert-choice router (see moe/routing/expert_choice_router.h).
#include "moe/routing/expert_choice_router.h"

#include <ATen/ATen.h>

#include <cmath>

#include "moe/core/error.h"
#include "moe/routing/losses.h"

namespace moe {

ExpertChoiceRouterImpl::ExpertChoiceRouterImpl(const RouterOptions& options) : RouterImpl(options) {
  options_.validate();
  if (options_.normalization == WeightNormalization::kAuto) options_.normalization = WeightNormalization::kNone;
  weight = register_router_weight();
}

void ExpertChoiceRouterImpl::reset_parameters() { reset_router_weight(weight); }

RoutingPlan ExpertChoiceRouterImpl::route_impl(const at::Tensor& hidden, const RoutingContext& context) {
  const int64_t T = hidden.size(0), E = options_.num_experts;
  auto logits = router_logits(hidden, weight);
  auto probs = at::softmax(logits, -1);  // [T, E]
  int64_t C = compute_capacity(options_.capacity, T, E, options_.top_k, is_training());
  if (C < 0) C = T;
  at::Tensor index;
  {
    at::NoGradGuard no_grad;
    // Each expert's top-C tokens: a stable descending sort over tokens keeps ties in token order.
    // Padding rows (when masked) rank last, so an expert takes one only when the real tokens run out
    // (and the routing pass then drops it).
    auto scores = probs.detach();
    const auto pad = mask_padding(context);
    if (pad.defined()) scores = scores.masked_fill(pad.unsqueeze(1), -1.0);
    auto order = std::get<1>(scores.t().sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));  // [E, T]
    auto chosen = at::zeros({T, E}, at::TensorOptions().dtype(at::kBool).device(hidden.device()));
    if (C > 0 && T > 0) {
      auto tokens = order.narrow(1, 0, C);  // [E, C]
      auto experts = at::arange(E, tokens.options()).unsqueeze(1).expand({E, C});
      chosen.index_put_({tokens.reshape({-1}), experts.reshape({-1})}, at::ones({}, chosen.options()));
    }
    // Compact each token's chosen experts into the first slots, in expert order.
    const int64_t K = T == 0 ? 1 : std::max<int64_t>(1, chosen.sum(1).max().item<int64_t>());
    auto key = at::where(chosen, at::arange(E, at::TensorOptions().dtype(at::kLong).device(hidden.device())),
                         at::full({}, E, at::TensorOptions().dtype(at::kLong).device(hidden.device())));
    auto sorted = std::get<0>(key.sort(/*stable=*/true, /*dim=*/1, /*descending=*/false)).narrow(1, 0, K);
    index = at::where(sorted.lt(E), sorted, at::full({}, -1, sorted.options()));
  }
  RoutingPlan plan;
  plan.expert_index = index;
  plan.weight = at::where(index.ge(0), probs.gather(1, index.clamp_min(0)), at::zeros({}, probs.options()));
  plan.normalization = options_.normalization;
  plan.capacity = C;  // every expert holds exactly min(C, T) rows; the layout drops nothing
  if (options_.z_loss_coef > 0) plan.aux_losses["z"] = AuxLoss{router_z_loss(logits), options_.z_loss_coef};
  return plan;
}

}  // namespace moe
