// XMoE threshold router (Yang et al. 2024, "XMoE: Sparse Models with Fine-grained and Adaptive Expert
// Selection"; official code ysngki/XMoE), as its code behaves:
//   p = softmax(x W^T) in fp32 (no bias, no noise); sort p descending per token (stable);
//   keep rank r while the cumulative probability before it is < t (strict), rank 0 always kept;
//   K = the longest selection in the batch, shorter selections padded with -1;
//   weights = the raw probabilities (RouterOptions::normalization kAuto -> kNone);
//   capacity from RouterOptions::capacity with k = 1 (XMoE: formula kDeepSpeed, max(ceil(γT/E), 4));
//   priority: rank first, then higher probability, then token order (deterministic; the official
//   float score (K - r) + p leaves near-ties to top-k's order);
//   aux loss "balance" from the pre-capacity top-1 choice only.
// Dense-to-sparse: RouterOptions::threshold = 1 (every expert in training) with eval_threshold < 1;
// set_threshold changes the training threshold for other schedules.
#pragma once

#include <torch/nn/pimpl.h>

#include "moe/ops/router_epilogue.h"
#include "moe/routing/router.h"

namespace moe {

class ThresholdRouterImpl : public RouterImpl {
 public:
  /// Throws moe::Error for invalid options (threshold outside (0, 1], see RouterOptions::validate).
  explicit ThresholdRouterImpl(const RouterOptions& options);
  void reset_parameters();
  /// Changes the training threshold t (schedules); must be in (0, 1].
  void set_threshold(double threshold);

  at::Tensor weight;  ///< [E, d_model]

 protected:
  RoutingPlan route_impl(const at::Tensor& hidden, const RoutingContext& context) override;
};
TORCH_MODULE(ThresholdRouter);

// The selection rule alone, threshold_select(probs, threshold), lives with the fused epilogue in
// moe/ops/router_epilogue.h (included above).

}  // namespace moe
