// Capacity policies (see moe/routing/capacity.h).
#include "moe/routing/capacity.h"

#include <algorithm>
#include <cmath>

#include "moe/core/error.h"

namespace moe {

CapacityFormula parse_capacity_formula(const std::string& name) {
  if (name == "gshard") return CapacityFormula::kGShard;
  if (name == "deepspeed") return CapacityFormula::kDeepSpeed;
  throw Error("capacity formula must be one of gshard, deepspeed; got '" + name + "'");
}

std::string to_string(CapacityFormula formula) {
  return formula == CapacityFormula::kGShard ? "gshard" : "deepspeed";
}

void CapacityOptions::validate(const std::string& owner) const {
  MOE_CHECK(std::isfinite(capacity_factor) && capacity_factor > 0, owner,
            ".capacity.capacity_factor must be > 0, got ", capacity_factor);
  MOE_CHECK(std::isfinite(eval_capacity_factor) && eval_capacity_factor > 0, owner,
            ".capacity.eval_capacity_factor must be > 0, got ", eval_capacity_factor);
  MOE_CHECK(min_capacity >= 0, owner, ".capacity.min_capacity must be >= 0, got ", min_capacity);
  MOE_CHECK(eval_token_fraction >= 0 && eval_token_fraction <= 1, owner,
            ".capacity.eval_token_fraction must be in [0, 1] (0 = off), got ", eval_token_fraction);
}

int64_t compute_capacity(const CapacityOptions& options, int64_t num_tokens, int64_t num_experts,
                         int64_t top_k, bool training) {
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
      // Same operation order as DeepSpeed: (T / E) * γ (* k).
      const double per_expert = static_cast<double>(num_tokens) / static_cast<double>(num_experts);
      capacity = static_cast<int64_t>(std::ceil(per_expert * gamma * static_cast<double>(top_k)));
    }
    capacity = std::max(capacity, options.min_capacity);
  }
  return std::min(capacity, num_tokens);
}

}  // namespace moe
