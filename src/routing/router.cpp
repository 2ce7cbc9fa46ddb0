// The router base class: its checked entry point, the plan check and the usual projection (see
// moe/routing/router.h).
#include "moe/routing/router.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "moe/core/error.h"

namespace moe {

RouterImpl::RouterImpl(RouterOptions options) : options_(std::move(options)) {}

at::Tensor RouterImpl::uniform(at::IntArrayRef shape, const at::TensorOptions& options) const {
  if (uniform_source_) {
    auto u = uniform_source_(shape, options);
    MOE_CHECK(u.defined() && u.sizes() == shape, "Router: the uniform source returned ",
              u.defined() ? u.sizes() : at::IntArrayRef{}, ", expected ", shape);
    return u.to(options);
  }
  return at::empty(shape, options).uniform_(0.0, 1.0, generator_);
}

at::Tensor RouterImpl::register_router_weight() {
  auto weight = register_parameter("weight", at::empty({options_.num_experts, options_.d_model}));
  reset_router_weight(weight);
  return weight;
}

void RouterImpl::reset_router_weight(at::Tensor& weight) const {
  const double bound = 1.0 / std::sqrt(static_cast<double>(options_.d_model));
  at::NoGradGuard no_grad;
  weight.uniform_(-bound, bound);
}

at::Tensor router_logits(const at::Tensor& hidden, const at::Tensor& weight) {
  const auto dtype =
      (hidden.scalar_type() == at::kDouble || weight.scalar_type() == at::kDouble) ? at::kDouble : at::kFloat;
  return at::matmul(hidden.to(dtype), weight.to(dtype).t());
}

RoutingPlan RouterImpl::route(const at::Tensor& hidden, RoutingContext context) {
  MOE_CHECK(hidden.defined() && hidden.dim() == 2 && hidden.size(1) == options_.d_model, "Router: hidden must be [T, ",
            options_.d_model, "], got ", hidden.defined() ? hidden.sizes() : at::IntArrayRef{});
  MOE_CHECK(at::isFloatingType(hidden.scalar_type()), "Router: hidden must be floating, got ", hidden.scalar_type());
  const int64_t T = hidden.size(0);
  if (context.leading_shape.empty()) context.leading_shape = {T};
  int64_t product = 1;
  for (int64_t d : context.leading_shape) product *= d;
  MOE_CHECK(product == T, "Router: context.leading_shape multiplies to ", product, " but hidden has ", T, " tokens");
  if (context.token_ids.defined()) {
    MOE_CHECK(context.token_ids.numel() == T && context.token_ids.scalar_type() == at::kLong,
              "Router: context.token_ids must be int64 with ", T, " elements, got ", context.token_ids.scalar_type(),
              " ", context.token_ids.sizes());
    context.token_ids = context.token_ids.reshape({T});
  }
  if (context.padding.defined()) {
    MOE_CHECK(context.padding.numel() == T && context.padding.scalar_type() == at::kBool, "Router: context.padding ",
              "must be bool with ", T, " elements, got ", context.padding.scalar_type(), " ", context.padding.sizes());
    context.padding = context.padding.reshape({T}).to(hidden.device());
  }
  if (context.gumbel_noise.defined()) {
    MOE_CHECK(context.gumbel_noise.dim() == 2 && context.gumbel_noise.size(0) == T &&
                  context.gumbel_noise.size(1) == options_.num_experts,
              "Router: context.gumbel_noise must be [", T, ", ", options_.num_experts, "], got ",
              context.gumbel_noise.sizes());
  }
  auto plan = route_impl(hidden.contiguous(), context);
  check_plan(plan, T, name_.empty() ? std::string("(unregistered)") : name_);
  return plan;
}

void check_plan(const RoutingPlan& plan, int64_t num_tokens, const std::string& router) {
  MOE_CHECK(plan.expert_index.defined() && plan.expert_index.dim() == 2 && plan.expert_index.size(0) == num_tokens &&
                plan.expert_index.scalar_type() == at::kLong,
            "router '", router, "' returned expert_index ",
            plan.expert_index.defined() ? plan.expert_index.sizes() : at::IntArrayRef{}, " ",
            plan.expert_index.defined() ? plan.expert_index.scalar_type() : at::kLong, "; expected [", num_tokens,
            ", K] int64");
  MOE_CHECK(plan.weight.defined() && plan.weight.sizes() == plan.expert_index.sizes() &&
                at::isFloatingType(plan.weight.scalar_type()),
            "router '", router, "' returned weight ", plan.weight.defined() ? plan.weight.sizes() : at::IntArrayRef{},
            "; expected floating ", plan.expert_index.sizes());
  MOE_CHECK(!plan.priority.defined() || plan.priority.sizes() == plan.expert_index.sizes(), "router '", router,
            "' returned priority ", plan.priority.sizes(), "; expected ", plan.expert_index.sizes());
  MOE_CHECK(plan.normalization != WeightNormalization::kAuto, "router '", router,
            "' returned normalization 'auto'; a router must resolve it");
}

}  // namespace moe
