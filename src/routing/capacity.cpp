// Capacity policies (see moe/routing/capacity.h).
#include "moe/routing/capacity.h"

#include <algorithm>
#include <cmath>

#include "moe/core/error.h"

namespace moe {

CapacityFormula parse_capacity_formula(const std::string& name) {
  if (name == "gshard") return CapacityFormula::kGShard;
  if (name == "deepspeed") return CapacityFormula::kDeepSpeed;
  if (name == "token_share") return CapacityFormula::kTokenShare;
  MOE_THROW("capacity formula must be one of gshard, deepspeed, token_share; got '", printable(name), "'");
}

std::string to_string(CapacityFormula formula) {
  switch (formula) {
    case CapacityFormula::kGShard: return "gshard";
    case CapacityFormula::kDeepSpeed: return "deepspeed";
    case CapacityFormula::kTokenShare: return "token_share";
  }
  return "?";
}

std::vector<OptionField> capacity_option_fields(CapacityOptions& c) {
  FieldList f;
  f.add("capacity_factor", c.capacity_factor,
        "capacity factor γ in training (and in evaluation unless eval_capacity_factor is set)")
      .above(0)
      .member = "capacity.capacity_factor";
  f.add("eval_capacity_factor", c.eval_capacity_factor, "capacity factor γ in evaluation").above(0).member =
      "capacity.eval_capacity_factor";
  f.add("min_capacity", c.min_capacity, "lower bound on the capacity (XMoE: 4)").at_least(0).member =
      "capacity.min_capacity";
  f.add("eval_token_fraction", c.eval_token_fraction,
        "evaluation capacity ceil(f·T) when > 0 (1 = nothing dropped); 0 = use eval_capacity_factor")
      .in(0, 1)
      .member = "capacity.eval_token_fraction";
  f.add("drop_tokens", c.drop_tokens, "false: no capacity limit").member = "capacity.drop_tokens";
  f.add_custom(
       "capacity_formula", FieldType::kString,
       "gshard: floor(γ·k·ceil(T/E)) | deepspeed: ceil(γ·k·T/E) | token_share: ceil(γ·T/E), whatever k",
       [&c](const std::string& v) { c.formula = parse_capacity_formula(v); },
       [&c] { return toml_string(to_string(c.formula)); })
      .member = "capacity.formula";
  return std::move(f.fields());
}

void CapacityOptions::validate(const std::string& owner) const {
  auto copy = *this;
  for (const auto& field : capacity_option_fields(copy)) field.check(owner, /*by_member=*/true);
}

int64_t compute_capacity(const CapacityOptions& options, int64_t num_tokens, int64_t num_experts, int64_t top_k,
                         bool training) {
  MOE_CHECK(num_tokens >= 0, "compute_capacity: num_tokens must be >= 0, got ", num_tokens);
  MOE_CHECK(num_experts >= 1, "compute_capacity: num_experts must be >= 1, got ", num_experts);
  MOE_CHECK(top_k >= 1, "compute_capacity: top_k must be >= 1, got ", top_k);
  if (!options.drop_tokens) return -1;
  int64_t capacity = 0;
  if (!training && options.eval_token_fraction > 0) {
    capacity = static_cast<int64_t>(std::ceil(options.eval_token_fraction * static_cast<double>(num_tokens)));
  } else {
    const double gamma = training ? options.capacity_factor : options.eval_capacity_factor;
    if (options.formula == CapacityFormula::kGShard) {
      const int64_t per_expert = (num_tokens + num_experts - 1) / num_experts;
      capacity = static_cast<int64_t>(std::floor(gamma * static_cast<double>(top_k * per_expert)));
    } else {
      // Same operation order as DeepSpeed and XMoE: (T / E) * γ (* k).
      const double per_expert = static_cast<double>(num_tokens) / static_cast<double>(num_experts);
      const double k = options.formula == CapacityFormula::kDeepSpeed ? static_cast<double>(top_k) : 1.0;
      capacity = static_cast<int64_t>(std::ceil(per_expert * gamma * k));
    }
    capacity = std::max(capacity, options.min_capacity);
  }
  return std::min(capacity, num_tokens);
}

}  // namespace moe
