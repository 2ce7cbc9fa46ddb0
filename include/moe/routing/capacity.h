// Capacity policies: how many packed rows each expert keeps per layer call. Shared by every router,
// so a new router gets capacity by filling RouterOptions::capacity.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moe/core/option_fields.h"

namespace moe {

enum class CapacityFormula {
  /// floor(γ · k · ceil(T / E)): fairseq's top1gating (k = 1, int(γ·ceil(T/E))) and top2gating
  /// (k = 2, γ = 1: 2·ceil(T/E)), as used by GShard/Switch reproductions and SMoE.
  kGShard,
  /// ceil((T / E) · γ · k): DeepSpeed's _capacity (its top2gating passes 2γ, topkgating kγ). XMoE's
  /// threshold router uses it with k = 1: max(ceil((T/E)·γ), min_capacity).
  kDeepSpeed,
  /// ceil((T / E) · γ), whatever k: XMoE's top-k baseline (its main_topkGating,
  /// max(ceil(T/E·γ), 4)), where every expert of a token shares one budget.
  kTokenShare,
};

/// Parses "gshard", "deepspeed" or "token_share"; throws moe::Error otherwise.
CapacityFormula parse_capacity_formula(const std::string& name);
std::string to_string(CapacityFormula formula);

struct CapacityOptions {
  /// γ in training. Must be > 0.
  double capacity_factor = 1.0;
  /// γ in evaluation. Must be > 0.
  double eval_capacity_factor = 1.0;
  /// Lower bound on the capacity (DeepSpeed's min_capacity; XMoE uses 4). Must be >= 0.
  int64_t min_capacity = 0;
  /// When > 0, evaluation capacity is ceil(fraction · T) instead (fairseq's
  /// moe_eval_capacity_token_fraction; 1.0 never drops). 0 turns it off. Must be in [0, 1].
  double eval_token_fraction = 0.0;
  /// false: experts keep every assignment (no capacity limit).
  bool drop_tokens = true;
  CapacityFormula formula = CapacityFormula::kGShard;

  /// Throws moe::Error naming `owner`.capacity.<field> for an invalid value.
  void validate(const std::string& owner = "CapacityOptions") const;
};

/// The capacity keys of the router option list (moe/routing/router_options.h): capacity_factor,
/// eval_capacity_factor, min_capacity, eval_token_fraction, drop_tokens, capacity_formula.
std::vector<OptionField> capacity_option_fields(CapacityOptions& options);

/// Per-expert capacity for T tokens, E experts and k slots per token, or -1 (unlimited) when
/// drop_tokens is false. Clamped to [0, T]: an expert can receive at most one row per token.
int64_t compute_capacity(const CapacityOptions& options, int64_t num_tokens, int64_t num_experts, int64_t top_k,
                         bool training);

}  // namespace moe
