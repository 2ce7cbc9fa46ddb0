// One routing pass, the data path every MoE block shares (ARCHITECTURE.md, "The data path"):
//   router.route -> RoutingPlan -> build_layout -> normalize_combine_weights -> dispatch
//   -> run_experts (local or over the expert-parallel group) -> combine, and the pass's MoEStats.
// MoELayer runs one pass over all its tokens; SMoE's StratifiedMoEBlock runs one per stratum over the
// tokens waiting there (its gates see only their stratum's experts and later ones, so their ids are
// offset to global ids here).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>

#include "moe/layers/expert_bank.h"
#include "moe/layers/moe_stats.h"
#include "moe/parallel/communicator.h"
#include "moe/routing/router.h"

namespace moe {

/// Checks an FFN-slot input and returns it as [T, d] contiguous. x: [..., d_model] (rank >= 2),
/// floating, in `reference_param`'s dtype and on its device; check_finite adds a NaN/Inf scan (one
/// host read). Errors name `block`.
at::Tensor flatten_slot_input(const at::Tensor& x, int64_t d_model, const at::Tensor& reference_param,
                              bool check_finite, const char* block);

struct RoutingPassResult {
  at::Tensor output;          ///< [T, d] in hidden's dtype: Σ_k weight · expert_k(hidden) per token
  at::Tensor expert_index;    ///< [T, K] int64 global expert ids chosen (before capacity; -1 = empty)
  at::Tensor kept_per_token;  ///< [T] int64, experts that processed each token (after capacity)
  MoEStats stats;             ///< of this pass (token_passes = T)
};

/// Routes `hidden` ([T, d] floating, contiguous) with `router` and runs the chosen experts of `bank`.
/// first_expert: global id of the router's expert 0 (SMoE strata; 0 otherwise); num_experts: E of
/// the layer (the layout's width). group / anchor: expert parallelism (see run_experts); null group =
/// every expert in `bank`.
RoutingPassResult run_routing_pass(RouterImpl& router, ExpertBankImpl& bank, const at::Tensor& hidden,
                                   const RoutingContext& context, int64_t first_expert, int64_t num_experts,
                                   const std::shared_ptr<Communicator>& group, const at::Tensor& anchor);

}  // namespace moe
