// Top-k softmax router: Switch Transformer (k = 1; Fedus et al. 2021) and GShard (k = 2; Lepikhin
// et al. 2020) as fairseq's top1gating/top2gating implement them, generalised to any k <= E.
//
//   logits = x W^T (no bias, fp32 or wider), p = softmax(logits)
//   slot 0 = argmax p; slots 1..k-1 = greedy next-highest p, or argmax(logits + Gumbel) with earlier
//            picks masked (sampling: training, and evaluation when sample_in_eval)
//   weight = p at the chosen experts; normalised per RouterOptions::normalization (auto: none for k = 1,
//            over kept slots for k >= 2)
//   capacity per RouterOptions::capacity, priority rank-major first-come-first-served
//   aux losses "balance" (E Σ f·P, f from the pre-capacity top-1) and, when its coefficient is > 0,
//   "z" (ST-MoE router z-loss)
#pragma once

#include <torch/nn/pimpl.h>

#include "moe/routing/router.h"

namespace moe {

class TopKRouterImpl : public RouterImpl {
 public:
  /// Throws moe::Error for invalid options (see RouterOptions::validate).
  explicit TopKRouterImpl(const RouterOptions& options);
  void reset_parameters();
  at::Tensor weight;  ///< [E, d_model] router projection (named "weight")

 protected:
  RoutingPlan route_impl(const at::Tensor& hidden, const RoutingContext& context) override;
};
TORCH_MODULE(TopKRouter);

}  // namespace moe
