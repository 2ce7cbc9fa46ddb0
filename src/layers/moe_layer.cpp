// MoELayer and DenseFFN (see moe/layers/moe_layer.h).
#include "moe/layers/moe_layer.h"

#include <ATen/ATen.h>

#include "moe/core/error.h"
#include "moe/layers/expert_parallel.h"
#include "moe/layers/routing_pass.h"

namespace moe {

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
  MOE_CHECK(router_options.d_model == d_model, "MoELayerOptions.router_options.d_model must equal d_model=", d_model,
            ", got ", router_options.d_model);
  MOE_CHECK(router_options.num_experts == num_experts,
            "MoELayerOptions.router_options.num_experts must equal num_experts=", num_experts, ", got ",
            router_options.num_experts);
  MOE_CHECK(experts.ffn.d_model == d_model, "MoELayerOptions.experts.ffn.d_model must equal d_model=", d_model,
            ", got ", experts.ffn.d_model);
  MOE_CHECK(experts.num_experts == num_experts,
            "MoELayerOptions.experts.num_experts must equal num_experts=", num_experts, ", got ", experts.num_experts);
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

MoEOutput MoELayerImpl::forward_impl(const at::Tensor& x, const at::Tensor& token_ids, const at::Tensor& padding) {
  auto hidden = flatten_slot_input(x, options.d_model, experts->expert(experts->options.first_expert)->w1,
                                   options.check_finite, "MoELayer");
  RoutingContext context;
  context.leading_shape.assign(x.sizes().begin(), x.sizes().end() - 1);
  context.token_ids = token_ids;
  context.padding = padding;
  auto pass = run_routing_pass(*router, *experts, hidden, context, /*first_expert=*/0, options.num_experts,
                               options.expert_group, grad_anchor_);
  MoEOutput out;
  out.output = pass.output.view(x.sizes());
  out.stats = std::move(pass.stats);
  return out;
}

DenseFFNImpl::DenseFFNImpl(const DenseFFNOptions& options_) : options(options_) {
  options.validate();
  ffn = register_module("ffn", FFN(options.ffn));
}

MoEOutput DenseFFNImpl::forward_impl(const at::Tensor& x, const at::Tensor& /*token_ids*/,
                                     const at::Tensor& /*padding*/) {
  auto hidden = flatten_slot_input(x, options.ffn.d_model, ffn->w1, options.check_finite, "DenseFFN");
  MoEOutput out;
  out.output = ffn->forward(hidden).view(x.sizes());
  out.stats = dense_stats(hidden.size(0));
  return out;
}

}  // namespace moe
