// Top-k softmax router, Switch (k = 1) and GShard (k = 2) (see moe/routing/topk_router.h).
#include "moe/routing/topk_router.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>
#include <limits>

#include "moe/core/error.h"
#include "moe/ops/router_epilogue.h"
#include "moe/routing/losses.h"

namespace moe {
namespace {

// Standard Gumbel(0, 1) noise from U(0, 1) draws, -log(-log(U)) (fairseq gumbel_rsample).
at::Tensor gumbel_from_uniform(at::Tensor u) {
  const double tiny = u.scalar_type() == at::kDouble ? 1e-300 : 1e-30;
  return -at::log(-at::log(u.clamp_(tiny, 1.0 - 1e-7)));
}

}  // namespace

TopKRouterImpl::TopKRouterImpl(const RouterOptions& options) : RouterImpl(options) {
  options_.validate();
  if (options_.normalization == WeightNormalization::kAuto) {
    options_.normalization = options_.top_k == 1 ? WeightNormalization::kNone : WeightNormalization::kKept;
  }
  weight = register_router_weight();
}

void TopKRouterImpl::reset_parameters() { reset_router_weight(weight); }

RoutingPlan TopKRouterImpl::route_impl(const at::Tensor& hidden, const RoutingContext& context) {
  const int64_t T = hidden.size(0), E = options_.num_experts, K = options_.top_k;
  const bool training = is_training();
  auto x = hidden;
  if (training && options_.jitter > 0) {
    x = x.to(at::promote_types(x.scalar_type(), at::kFloat));
    x = x * (uniform(x.sizes(), x.options()) * (2 * options_.jitter) + (1.0 - options_.jitter));
  }
  auto logits = router_logits(x, weight);  // [T, E], fp32 (fp64 for fp64)
  const bool sample =
      K > 1 && options_.second_expert_policy == SecondExpertPolicy::kSampling && (training || options_.sample_in_eval);
  at::Tensor probs, top1;
  std::vector<at::Tensor> picks;
  if (!sample) {
    // Greedy: softmax and top-k fused on CUDA (moe/ops/router_epilogue.h); the same greedy order elsewhere.
    auto selection = softmax_topk(logits, K);
    probs = selection.probs;
    picks.push_back(selection.index);
    top1 = selection.index.select(1, 0);
  } else {
    probs = at::softmax(logits, -1);
    top1 = probs.argmax(-1);  // [T], pre-capacity top-1
    picks.push_back(top1.unsqueeze(1));
    at::NoGradGuard no_grad;
    // Sampling: argmax of logits + Gumbel noise with earlier picks masked (fairseq). Greedy (above)
    // ranks the logits, which stay distinct where a saturated fp32 softmax ties at 0.
    auto noise = context.gumbel_noise.defined() ? context.gumbel_noise.to(logits.options())
                                                : gumbel_from_uniform(uniform(logits.sizes(), logits.options()));
    auto scores = logits.detach() + noise;
    const double neg_inf = -std::numeric_limits<double>::infinity();
    for (int64_t r = 1; r < K; ++r) {
      scores.scatter_(1, picks.back(), neg_inf);
      picks.push_back(scores.argmax(-1, /*keepdim=*/true));
    }
  }
  RoutingPlan plan;
  plan.expert_index = at::cat(picks, 1);  // [T, K]
  plan.weight = probs.gather(1, plan.expert_index);
  plan.normalization = options_.normalization;
  plan.capacity = compute_capacity(options_.capacity, T, E, K, training);
  plan.aux_losses["balance"] =
      AuxLoss{load_balancing_loss(probs, top1, mask_padding(context)), options_.balance_loss_coef};
  if (options_.z_loss_coef > 0) plan.aux_losses["z"] = AuxLoss{router_z_loss(logits), options_.z_loss_coef};
  return plan;
}

}  // namespace moe
