// Expert-choice router (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing"): instead
// of tokens choosing experts, each expert takes its top-C tokens by router probability, so every
// expert is exactly full and a token may be processed by zero, one or several experts.
//   p = softmax(x W^T) in fp32 over experts; C = compute_capacity(RouterOptions::capacity, T, E, k)
//   (with the default GShard formula and top_k = k: k·ceil(T/E), i.e. k experts per token on average);
//   expert e takes the C tokens with the largest p[:, e] (ties: lower token index first);
//   weight = p[t, e] (raw, as in the paper); a token's slots are compacted to K = the most experts
//   any token got, padded with -1. No auxiliary loss is needed (load is balanced by construction);
//   the z-loss is attached when its coefficient is > 0.
#pragma once

#include <torch/nn/pimpl.h>

#include "moe/routing/router.h"

namespace moe {

class ExpertChoiceRouterImpl : public RouterImpl {
 public:
  explicit ExpertChoiceRouterImpl(const RouterOptions& options);
  void reset_parameters();

  at::Tensor weight;  ///< [E, d_model]

 protected:
  RoutingPlan route_impl(const at::Tensor& hidden, const RoutingContext& context) override;
};
TORCH_MODULE(ExpertChoiceRouter);

}  // namespace moe
