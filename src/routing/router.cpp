// Router base class, shared router options and combine-weight normalisation (see moe/routing/router.h).
#include "moe/routing/router.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "moe/core/error.h"

namespace moe {

WeightNormalization parse_weight_normalization(const std::string& name) {
  if (name == "auto") return WeightNormalization::kAuto;
  if (name == "none") return WeightNormalization::kNone;
  if (name == "selected") return WeightNormalization::kSelected;
  if (name == "kept") return WeightNormalization::kKept;
  throw Error("weight normalization must be one of auto, none, selected, kept; got '" + name + "'");
}

std::string to_string(WeightNormalization normalization) {
  switch (normalization) {
    case WeightNormalization::kAuto: return "auto";
    case WeightNormalization::kNone: return "none";
    case WeightNormalization::kSelected: return "selected";
    case WeightNormalization::kKept: return "kept";
  }
  return "?";
}

SecondExpertPolicy parse_second_expert_policy(const std::string& name) {
  if (name == "greedy") return SecondExpertPolicy::kGreedy;
  if (name == "sampling") return SecondExpertPolicy::kSampling;
  throw Error("second expert policy must be one of greedy, sampling; got '" + name + "'");
}

std::string to_string(SecondExpertPolicy policy) {
  return policy == SecondExpertPolicy::kGreedy ? "greedy" : "sampling";
}

void RouterOptions::validate(const std::string& owner) const {
  MOE_CHECK(d_model >= 1, owner, ".d_model must be >= 1, got ", d_model);
  MOE_CHECK(num_experts >= 1, owner, ".num_experts must be >= 1, got ", num_experts);
  MOE_CHECK(top_k >= 1 && top_k <= num_experts, owner, ".top_k must be in [1, num_experts=", num_experts,
            "], got ", top_k);
  capacity.validate(owner);
  MOE_CHECK(std::isfinite(jitter) && jitter >= 0 && jitter < 1, owner, ".jitter must be in [0, 1), got ",
            jitter);
  MOE_CHECK(std::isfinite(balance_loss_coef) && balance_loss_coef >= 0, owner,
            ".balance_loss_coef must be >= 0, got ", balance_loss_coef);
  MOE_CHECK(std::isfinite(z_loss_coef) && z_loss_coef >= 0, owner, ".z_loss_coef must be >= 0, got ",
            z_loss_coef);
}

double RouterOptions::extra_double(const std::string& key, double fallback) const {
  auto it = extra.find(key);
  if (it == extra.end()) return fallback;
  try {
    size_t used = 0;
    double value = std::stod(it->second, &used);
    if (used == it->second.size()) return value;
  } catch (const std::exception&) {
  }
  throw Error("RouterOptions.extra['" + key + "'] must be a number, got '" + it->second + "'");
}

int64_t RouterOptions::extra_int(const std::string& key, int64_t fallback) const {
  auto it = extra.find(key);
  if (it == extra.end()) return fallback;
  try {
    size_t used = 0;
    long long value = std::stoll(it->second, &used);
    if (used == it->second.size()) return value;
  } catch (const std::exception&) {
  }
  throw Error("RouterOptions.extra['" + key + "'] must be an integer, got '" + it->second + "'");
}

RouterImpl::RouterImpl(RouterOptions options) : options_(std::move(options)) {}

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
  const auto dtype = (hidden.scalar_type() == at::kDouble || weight.scalar_type() == at::kDouble) ? at::kDouble
                                                                                                   : at::kFloat;
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
  return route_impl(hidden.contiguous(), context);
}

at::Tensor normalize_combine_weights(const at::Tensor& weight, const at::Tensor& selected, const at::Tensor& kept,
                                     WeightNormalization normalization) {
  MOE_CHECK(weight.sizes() == kept.sizes() && weight.sizes() == selected.sizes(), "normalize_combine_weights: weight ",
            weight.sizes(), ", selected ", selected.sizes(), " and kept ", kept.sizes(), " must have the same shape");
  MOE_CHECK(kept.scalar_type() == at::kBool && selected.scalar_type() == at::kBool,
            "normalize_combine_weights: selected and kept must be bool, got ", selected.scalar_type(), " and ",
            kept.scalar_type());
  MOE_CHECK(normalization != WeightNormalization::kAuto,
            "normalize_combine_weights: 'auto' must be resolved by the router first");
  auto zero = at::zeros({}, weight.options());
  auto kept_weight = at::where(kept, weight, zero);
  if (normalization == WeightNormalization::kNone) return kept_weight;
  const double eps = weight.scalar_type() == at::kDouble ? std::numeric_limits<double>::epsilon()
                                                           : std::numeric_limits<float>::epsilon();
  if (normalization == WeightNormalization::kKept) {
    return kept_weight / kept_weight.sum(-1, /*keepdim=*/true).clamp_min(eps);
  }
  // kSelected: normalise over every selected slot, then zero the dropped ones (fairseq
  // normalize_gate_prob_before_dropping=True).
  return kept_weight / at::where(selected, weight, zero).sum(-1, /*keepdim=*/true).clamp_min(eps);
}

}  // namespace moe
