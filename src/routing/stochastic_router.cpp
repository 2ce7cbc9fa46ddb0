// THOR stochastic router (see moe/routing/stochastic_router.h).
#include "moe/routing/stochastic_router.h"

#include <ATen/ATen.h>

#include "moe/core/error.h"

namespace moe {

DrawGranularity parse_draw_granularity(const std::string& name) {
  if (name == "batch") return DrawGranularity::kBatch;
  if (name == "token") return DrawGranularity::kToken;
  if (name == "sequence") return DrawGranularity::kSequence;
  if (name == "position") return DrawGranularity::kPosition;
  throw Error("granularity must be one of batch, token, sequence, position; got '" + name + "'");
}

StochasticRouterImpl::StochasticRouterImpl(const RouterOptions& options) : RouterImpl(options) {
  options_.top_k = 1;
  options_.validate();
  train_granularity_ = parse_draw_granularity(options_.train_granularity);
  eval_granularity_ = parse_draw_granularity(options_.eval_granularity);
  options_.normalization = WeightNormalization::kNone;
}

RoutingPlan StochasticRouterImpl::route_impl(const at::Tensor& hidden, const RoutingContext& context) {
  const int64_t T = hidden.size(0), E = options_.num_experts;
  const auto granularity = is_training() ? train_granularity_ : eval_granularity_;
  const auto& shape = context.leading_shape;
  auto long_opts = at::TensorOptions().dtype(at::kLong).device(hidden.device());
  // An expert uniformly at random: floor(U · E) (the caller's U(0, 1) source when set).
  auto draw = [&](int64_t n) {
    return (uniform({n}, long_opts.dtype(at::kDouble)) * static_cast<double>(E)).floor().clamp_max(E - 1).to(at::kLong);
  };
  at::Tensor expert;
  switch (granularity) {
    case DrawGranularity::kBatch: expert = draw(1).expand({T}); break;
    case DrawGranularity::kToken: expert = draw(T); break;
    case DrawGranularity::kSequence:
    case DrawGranularity::kPosition: {
      MOE_CHECK(shape.size() == 2, "StochasticRouter: granularity '",
                granularity == DrawGranularity::kSequence ? "sequence" : "position",
                "' needs a [B, S, d] input, got leading shape of rank ", shape.size());
      const int64_t B = shape[0], S = shape[1];
      expert = granularity == DrawGranularity::kSequence ? draw(B).unsqueeze(1).expand({B, S})
                                                         : draw(S).unsqueeze(0).expand({B, S});
      break;
    }
  }
  const auto wdtype = hidden.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  RoutingPlan plan;
  plan.expert_index = expert.reshape({T, 1}).contiguous();
  plan.weight = at::ones({T, 1}, hidden.options().dtype(wdtype));
  plan.normalization = WeightNormalization::kNone;
  plan.capacity = -1;
  return plan;
}

}  // namespace moe
