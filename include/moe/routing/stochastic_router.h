// THOR stochastic router (Zuo et al. 2022, "Taming Sparsely Activated Transformer with Stochastic
// Experts"; official code microsoft/Stochastic-Mixture-of-Experts): a uniformly random expert with
// weight 1, no parameters, no auxiliary loss, no capacity limit. How often it draws:
//   batch     one expert for the whole call (THOR training: one draw per layer per forward pass)
//   token     an independent expert per token (the official inference_level 0)
//   sequence  one expert per sequence of a [B, S, d] input
//   position  one expert per position, shared across the batch (the official inference_level 1,
//             which the code calls "sentence level")
// RouterOptions::train_granularity / eval_granularity choose. Draws come from the router's generator
// (set_generator) or LibTorch's default one, so two passes draw independently and runs reproduce.
// Only the chosen expert is computed, in training and in inference.
#pragma once

#include <torch/nn/pimpl.h>

#include "moe/routing/router.h"

namespace moe {

enum class DrawGranularity { kBatch, kToken, kSequence, kPosition };
DrawGranularity parse_draw_granularity(const std::string& name);

class StochasticRouterImpl : public RouterImpl {
 public:
  explicit StochasticRouterImpl(const RouterOptions& options);

 protected:
  RoutingPlan route_impl(const at::Tensor& hidden, const RoutingContext& context) override;

 private:
  DrawGranularity train_granularity_;
  DrawGranularity eval_granularity_;
};
TORCH_MODULE(StochasticRouter);

}  // namespace moe
