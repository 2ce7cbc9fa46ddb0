// The table of MoE variants (see moe/models/variants.h).
#include "moe/models/variants.h"

#include <algorithm>

#include "moe/core/error.h"
#include "moe/layers/presets.h"

namespace moe {
namespace {

// An MoELayer with `router` and k; nothing dropped in evaluation (the papers' generation scripts).
std::function<MoELayerOptions(int64_t, int64_t, int64_t, int64_t)> router_layer(const std::string& router,
                                                                                double capacity_factor = 1.0) {
  return [router, capacity_factor](int64_t d, int64_t E, int64_t h, int64_t k) {
    MoELayerOptions l(d, E, h, k);
    l.router = router;
    l.router_options.capacity.capacity_factor = l.router_options.capacity.eval_capacity_factor = capacity_factor;
    l.router_options.capacity.eval_token_fraction = 1.0;
    return l;
  };
}

// One row: an MoELayer variant with `router` and k (0 = moe.top_k) unless changed after.
VariantSpec row(const std::string& name, const std::string& router, int64_t fixed_top_k, const std::string& summary) {
  VariantSpec v;
  v.name = name;
  v.summary = summary;
  v.router = router;
  v.fixed_top_k = fixed_top_k;
  v.layer = router_layer(router);
  return v;
}

const std::vector<VariantSpec>& table() {
  static const std::vector<VariantSpec> rows = [] {
    std::vector<VariantSpec> t;
    auto dense = row("dense", "", 0, "dense FFN in every layer");
    dense.kind = SlotKind::kDense;
    dense.layer = nullptr;
    t.push_back(dense);
    auto switch_ = row("switch", "topk", 1, "Switch: topk router, k = 1, capacity factor 1.25");
    switch_.layer = router_layer("topk", 1.25);
    t.push_back(switch_);
    t.push_back(row("gshard", "topk", 2,
                    "GShard: topk router, k = 2 with a Gumbel-sampled second expert, capacity 2·ceil(T/E)"));
    t.push_back(row("topk", "topk", 0, "topk router with moe.top_k experts per token"));
    auto xmoe = row("xmoe", "threshold", 1,  // k = 1 in the capacity formula
                    "XMoE: threshold router, variable k, capacity max(ceil(T/E·2), 4), replicated init");
    xmoe.nominal_experts_per_token = -1;
    xmoe.layer = [](int64_t d, int64_t E, int64_t h, int64_t) {
      auto l = xmoe_layer_options(d, E, h, /*lm_code=*/false);
      l.router_options.capacity.eval_token_fraction = 0;  // its MT code evaluates with γ = 2: drops possible
      return l;
    };
    t.push_back(xmoe);
    auto xmoe_topk = row("xmoe_topk", "topk", 0,
                         "XMoE's top-k baseline: moe.top_k, Gumbel-sampled later experts also in evaluation, raw "
                         "weights, capacity max(ceil(T/E·2), 4) whatever k");
    xmoe_topk.layer = [](int64_t d, int64_t E, int64_t h, int64_t k) {
      auto l = xmoe_topk_layer_options(d, E, h, k, /*lm_code=*/false);
      l.router_options.capacity.eval_token_fraction = 0;  // evaluated with γ, as the threshold variant
      return l;
    };
    t.push_back(xmoe_topk);
    auto thor = row("thor", "stochastic", 1,
                    "THOR: stochastic router (one expert per batch in training), consistency loss, two passes");
    thor.two_pass = true;
    thor.layer = [](int64_t d, int64_t E, int64_t h, int64_t) { return thor_layer_options(d, E, h); };
    t.push_back(thor);
    auto smoe = row("smoe", "topk", 0, "SMoE: stratified block (moe.strata), top-2 gates per stratum, dynamic passes");
    smoe.kind = SlotKind::kStratified;
    smoe.aux_combine = AuxCombine::kMean;
    smoe.nominal_experts_per_token = -1;
    smoe.layer = nullptr;
    smoe.block = [](int64_t d, const std::vector<int64_t>& strata, int64_t h, double dropout) {
      return smoe_block_options(d, strata, h, dropout);
    };
    t.push_back(smoe);
    t.push_back(row("expert_choice", "expert_choice", 0,
                    "expert choice: each expert takes its top-C tokens (C from moe.top_k and the capacity factor)"));
    t.push_back(row("hash", "hash", 1, "hash routing of the token id (moe.hash_by = position: of the position)"));
    return t;
  }();
  return rows;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

AuxCombine parse_aux_combine(const std::string& name) {
  if (name == "sum") return AuxCombine::kSum;
  if (name == "mean") return AuxCombine::kMean;
  MOE_THROW("aux loss combination must be sum or mean, got '", name, "'");
}

std::vector<std::string> builtin_variant_names() {
  std::vector<std::string> out;
  for (const auto& row : table()) out.push_back(row.name);
  return out;
}

VariantSpec variant_spec(const std::string& name, const std::string& owner) {
  for (const auto& row : table())
    if (row.name == name) return row;
  const auto routers = known_routers();
  MOE_CHECK(std::find(routers.begin(), routers.end(), name) != routers.end(), owner, "='", printable(name),
            "' is neither a built-in variant (", join(builtin_variant_names()), ") nor a registered router (",
            join(routers), ")");
  return row(name, name, 0, "MoELayer with the registered router '" + name + "'");
}

}  // namespace moe
