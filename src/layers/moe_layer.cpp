// MoELayer and DenseFFN (see moe/layers/moe_layer.h).
#include "moe/layers/moe_layer.h"

#include <ATen/ATen.h>

#include <iomanip>
#include <sstream>

#include "moe/core/error.h"
#include "moe/layers/expert_parallel.h"
#include "moe/ops/dispatch_combine.h"
#include "moe/ops/layout.h"

namespace moe {
namespace {

// Checks a FFN-slot input against the layer's width and parameters; returns it as [T, d], contiguous.
at::Tensor check_and_flatten(const at::Tensor& x, int64_t d_model, const at::Tensor& reference_param,
                             bool check_finite, const char* layer) {
  MOE_CHECK(x.defined(), layer, ": input is undefined");
  MOE_CHECK(x.dim() >= 2, layer, ": input must have rank >= 2 ([T, d] or [B, S, d]), got rank ", x.dim(),
            " with shape ", x.sizes());
  MOE_CHECK(x.size(-1) == d_model, layer, ": input's last dimension must be d_model=", d_model, ", got shape ",
            x.sizes());
  MOE_CHECK(at::isFloatingType(x.scalar_type()), layer, ": input dtype must be floating, got ", x.scalar_type());
  MOE_CHECK(x.scalar_type() == reference_param.scalar_type(), layer, ": input dtype ", x.scalar_type(),
            " must match the layer's parameter dtype ", reference_param.scalar_type());
  MOE_CHECK(x.device() == reference_param.device(), layer, ": input is on ", x.device(),
            " but the layer's parameters are on ", reference_param.device());
  if (check_finite) {
    MOE_CHECK(at::isfinite(x).all().item<bool>(), layer, ": input contains NaN or Inf (check_finite is on)");
  }
  return x.reshape({-1, d_model}).contiguous();
}

}  // namespace

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

at::Tensor MoEStats::total_aux_loss() const {
  at::Tensor total;
  for (const auto& [name, loss] : aux_losses) {
    if (loss.coefficient == 0) continue;  // 0 · inf would be NaN
    auto term = loss.weighted();
    total = total.defined() ? total + term : term;
  }
  return total.defined() ? total : at::zeros({});
}

double MoEStats::relative_expert_flops(int64_t k) const {
  MOE_CHECK(k >= 1, "MoEStats::relative_expert_flops: k must be >= 1, got ", k);
  return experts_per_token.item<double>() / static_cast<double>(k);
}

std::string MoEStats::to_string() const {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3) << "tokens=" << num_tokens;
  if (dropped_fraction.defined()) out << " dropped=" << 100.0 * dropped_fraction.item<double>() << "%";
  if (experts_per_token.defined()) out << " experts/token=" << experts_per_token.item<double>();
  if (passes_per_token.defined()) out << " passes/token=" << passes_per_token.item<double>();
  for (const auto& [name, loss] : aux_losses) out << " " << name << "=" << loss.value.item<double>();
  if (tokens_per_expert.defined()) {
    out << " load=[";
    auto counts = tokens_per_expert.to(at::kCPU).contiguous();
    for (int64_t e = 0; e < counts.numel(); ++e) out << (e ? "," : "") << counts.data_ptr<int64_t>()[e];
    out << "]";
  }
  return out.str();
}

MoELayerOptions::MoELayerOptions(int64_t d_model_, int64_t num_experts_, int64_t hidden, int64_t top_k)
    : d_model(d_model_), num_experts(num_experts_) {
  router_options.d_model = d_model_;
  router_options.num_experts = num_experts_;
  router_options.top_k = top_k;
  experts.ffn.d_model = d_model_;
  experts.ffn.hidden = hidden;
  experts.num_experts = num_experts_;
}

void MoELayerOptions::validate() const {
  MOE_CHECK(d_model >= 1, "MoELayerOptions.d_model must be >= 1, got ", d_model);
  MOE_CHECK(num_experts >= 1, "MoELayerOptions.num_experts must be >= 1, got ", num_experts);
  MOE_CHECK(router_options.d_model == d_model, "MoELayerOptions.router_options.d_model must equal d_model=",
            d_model, ", got ", router_options.d_model);
  MOE_CHECK(router_options.num_experts == num_experts,
            "MoELayerOptions.router_options.num_experts must equal num_experts=", num_experts, ", got ",
            router_options.num_experts);
  MOE_CHECK(experts.ffn.d_model == d_model, "MoELayerOptions.experts.ffn.d_model must equal d_model=", d_model,
            ", got ", experts.ffn.d_model);
  MOE_CHECK(experts.num_experts == num_experts, "MoELayerOptions.experts.num_experts must equal num_experts=",
            num_experts, ", got ", experts.num_experts);
  router_options.validate("MoELayerOptions.router_options");
  experts.validate("MoELayerOptions.experts");
  MOE_CHECK(experts.first_expert == 0 && experts.local_count() == num_experts,
            "MoELayerOptions.experts.first_expert/num_local_experts must be 0/-1 (got ", experts.first_expert, "/",
            experts.num_local_experts, "): set MoELayerOptions.expert_group to shard the experts");
  expert_shard(num_experts, expert_group.get(), "MoELayerOptions");
}

MoELayerImpl::MoELayerImpl(const MoELayerOptions& options_) : options(options_) {
  options.validate();
  router = register_module("router", make_router(options.router, options.router_options));
  auto bank = options.experts;
  const auto shard = expert_shard(options.num_experts, options.expert_group.get(), "MoELayerOptions");
  bank.first_expert = shard.first;
  bank.num_local_experts = shard.count;
  experts = register_module("experts", ExpertBank(bank));
  grad_anchor_ = at::zeros({}).set_requires_grad(true);
}

MoEOutput MoELayerImpl::forward_impl(const at::Tensor& x, const at::Tensor& token_ids) {
  auto hidden = check_and_flatten(x, options.d_model, experts->expert(experts->options.first_expert)->w1,
                                  options.check_finite, "MoELayer");
  const int64_t T = hidden.size(0);

  RoutingContext context;
  context.leading_shape.assign(x.sizes().begin(), x.sizes().end() - 1);
  context.token_ids = token_ids;
  RoutingPlan plan = router->route(hidden, context);
  check_plan(plan, T, options.router);
  DispatchLayout layout = build_layout(plan.expert_index, options.num_experts, plan.capacity, plan.priority);
  auto weight = normalize_combine_weights(plan.weight, plan.expert_index.ge(0), layout.slot_row.ge(0),
                                          plan.normalization);

  auto packed = dispatch(hidden, layout);
  auto packed_out = run_experts(*experts, packed, layout.tokens_per_expert, options.expert_group, grad_anchor_);
  auto y = combine(packed_out, layout, weight);

  MoEOutput out;
  out.output = y.view(x.sizes());
  MoEStats& stats = out.stats;
  stats.num_tokens = T;
  stats.tokens_per_expert = layout.tokens_per_expert;
  stats.requested_per_expert = layout.requested_per_expert;
  auto selected = plan.expert_index.ge(0).sum().to(at::kFloat);
  auto kept = layout.slot_row.ge(0).sum().to(at::kFloat);
  const double tokens = static_cast<double>(std::max<int64_t>(T, 1));
  stats.dropped_fraction = layout.num_dropped.to(at::kFloat) / selected.clamp_min(1);
  stats.experts_per_token = kept / tokens;
  stats.selected_per_token = selected / tokens;
  stats.passes_per_token = at::ones({});
  stats.experts_per_token_histogram =
      at::bincount(layout.slot_row.ge(0).sum(1), {}, layout.top_k + 1);
  stats.aux_losses = std::move(plan.aux_losses);
  return out;
}

DenseFFNImpl::DenseFFNImpl(const DenseFFNOptions& options_) : options(options_) {
  options.validate();
  ffn = register_module("ffn", FFN(options.ffn));
}

MoEOutput DenseFFNImpl::forward_impl(const at::Tensor& x, const at::Tensor& /*token_ids*/) {
  auto hidden = check_and_flatten(x, options.ffn.d_model, ffn->w1, options.check_finite, "DenseFFN");
  const int64_t T = hidden.size(0);
  MoEOutput out;
  out.output = ffn->forward(hidden).view(x.sizes());
  auto long_opts = at::TensorOptions().dtype(at::kLong);
  out.stats.num_tokens = T;
  out.stats.tokens_per_expert = at::full({1}, T, long_opts);
  out.stats.requested_per_expert = out.stats.tokens_per_expert;
  out.stats.dropped_fraction = at::zeros({});
  out.stats.experts_per_token = at::ones({});
  out.stats.selected_per_token = at::ones({});
  out.stats.passes_per_token = at::ones({});
  out.stats.experts_per_token_histogram = at::tensor({int64_t{0}, T}, long_opts);
  return out;
}

}  // namespace moe
