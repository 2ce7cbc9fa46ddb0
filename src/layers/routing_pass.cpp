// One routing pass (see moe/layers/routing_pass.h).
#include "moe/layers/routing_pass.h"

#include <ATen/ATen.h>

#include "moe/core/error.h"
#include "moe/layers/expert_parallel.h"
#include "moe/ops/dispatch_combine.h"
#include "moe/ops/layout.h"

namespace moe {

at::Tensor flatten_slot_input(const at::Tensor& x, int64_t d_model, const at::Tensor& reference_param,
                              bool check_finite, const char* block) {
  MOE_CHECK(x.defined(), block, ": input is undefined");
  MOE_CHECK(x.dim() >= 2, block, ": input must have rank >= 2 ([T, d] or [B, S, d]), got rank ", x.dim(),
            " with shape ", x.sizes());
  MOE_CHECK(x.size(-1) == d_model, block, ": input's last dimension must be d_model=", d_model, ", got shape ",
            x.sizes());
  MOE_CHECK(at::isFloatingType(x.scalar_type()), block, ": input dtype must be floating, got ", x.scalar_type());
  MOE_CHECK(x.scalar_type() == reference_param.scalar_type(), block, ": input dtype ", x.scalar_type(),
            " must match the layer's parameter dtype ", reference_param.scalar_type());
  MOE_CHECK(x.device() == reference_param.device(), block, ": input is on ", x.device(),
            " but the layer's parameters are on ", reference_param.device());
  if (check_finite) {
    MOE_CHECK(at::isfinite(x).all().item<bool>(), block, ": input contains NaN or Inf (check_finite is on)");
  }
  return x.reshape({-1, d_model}).contiguous();
}

RoutingPassResult run_routing_pass(RouterImpl& router, ExpertBankImpl& bank, const at::Tensor& hidden,
                                   const RoutingContext& context, int64_t first_expert, int64_t num_experts,
                                   const std::shared_ptr<Communicator>& group, const at::Tensor& anchor) {
  const int64_t T = hidden.size(0);
  RoutingPlan plan = router.route(hidden, context);  // checked by the router's entry point
  auto index = plan.expert_index;
  if (first_expert != 0)  // router-local ids -> global ids
    index = at::where(index.ge(0), index + first_expert, at::full({}, -1, index.options()));
  // Padding rows get no expert (so no capacity slot, no compute and a zero output row) when the
  // router masks them; their choices are still reported (SMoE moves them on by their top-1).
  const bool masked = context.padding.defined() && router.options().mask_padding;
  auto routed = masked ? index.masked_fill(context.padding.to(index.device()).reshape({T, 1}), -1) : index;
  auto selected = routed.ge(0);
  DispatchLayout layout = build_layout(routed, num_experts, plan.capacity, plan.priority);
  auto kept = layout.slot_row.ge(0);
  auto weight = normalize_combine_weights(plan.weight, selected, kept, plan.normalization);

  auto packed_out = run_experts(bank, dispatch(hidden, layout), layout.tokens_per_expert, group, anchor);

  RoutingPassResult out;
  out.output = combine(packed_out, layout, weight);
  out.expert_index = index;
  out.kept_per_token = kept.sum(1);
  MoEStats& stats = out.stats;
  stats.num_tokens = T;
  stats.tokens_per_expert = layout.tokens_per_expert;
  stats.requested_per_expert = layout.requested_per_expert;
  stats.selected = selected.sum();
  stats.dropped = layout.num_dropped;
  stats.padding = masked ? context.padding.sum().to(at::kLong) : at::zeros({}, at::kLong);
  stats.token_passes = masked ? T - stats.padding : at::full({}, T, at::kLong);
  // The histogram of a known range [0, K] by scatter_add: at::bincount's CUDA kernel reads the
  // input's minimum and maximum to the host (two synchronisations per MoE layer call).
  stats.experts_per_token_histogram =
      at::zeros({std::max<int64_t>(layout.top_k, kept.size(1)) + 1}, out.kept_per_token.options())
          .scatter_add_(0, out.kept_per_token, at::ones_like(out.kept_per_token));
  stats.aux_losses = std::move(plan.aux_losses);
  stats.finalize();
  return out;
}

}  // namespace moe
