// Router options: the one list of keys, validation, explicit settings (see moe/routing/router_options.h).
#include "moe/routing/router_options.h"

#include <sstream>

#include "moe/core/error.h"

namespace moe {
namespace {

const std::vector<std::string> kGranularities{"batch", "token", "sequence", "position"};

// The field of `key`, or null.
const OptionField* find_field(const std::vector<OptionField>& fields, const std::string& key) {
  for (const auto& f : fields)
    if (f.key == key) return &f;
  return nullptr;
}

std::string known_keys(const std::vector<OptionField>& fields) {
  std::string out;
  for (const auto& f : fields) out += (out.empty() ? "" : ", ") + f.key;
  return out;
}

}  // namespace

SecondExpertPolicy parse_second_expert_policy(const std::string& name) {
  if (name == "greedy") return SecondExpertPolicy::kGreedy;
  if (name == "sampling") return SecondExpertPolicy::kSampling;
  MOE_THROW("second expert policy must be one of greedy, sampling; got '", printable(name), "'");
}

std::string to_string(SecondExpertPolicy policy) {
  return policy == SecondExpertPolicy::kGreedy ? "greedy" : "sampling";
}

std::vector<OptionField> router_option_fields(RouterOptions& o) {
  FieldList f;
  f.add("top_k", o.top_k, "experts per token of fixed-k routers (topk, expert_choice, routers of your own)")
      .at_least(1);
  for (auto& field : capacity_option_fields(o.capacity)) f.fields().push_back(std::move(field));
  f.add_custom(
      "second_expert_policy", FieldType::kString, "greedy | sampling (Gumbel noise on the later experts)",
      [&o](const std::string& v) { o.second_expert_policy = parse_second_expert_policy(v); },
      [&o] { return toml_string(to_string(o.second_expert_policy)); });
  f.add("sample_in_eval", o.sample_in_eval, "keep sampling the later experts in evaluation (SMoE's official code)");
  f.add_custom(
      "normalization", FieldType::kString,
      "combine weights: auto | none (raw probabilities) | selected | kept (over the experts that survived capacity)",
      [&o](const std::string& v) { o.normalization = parse_weight_normalization(v); },
      [&o] { return toml_string(to_string(o.normalization)); });
  f.add("jitter", o.jitter, "Switch input jitter ε in training (0 = off)").in(0, 1, /*hi_open=*/true);
  f.add("aux_weight", o.balance_loss_coef, "load-balancing loss coefficient").at_least(0).member = "balance_loss_coef";
  f.add("z_weight", o.z_loss_coef, "router z-loss coefficient").at_least(0).member = "z_loss_coef";
  f.add("threshold", o.threshold, "threshold router (XMoE): cumulative probability t")
      .in(0, 1, /*hi_open=*/false, /*lo_open=*/true);
  f.add("eval_threshold", o.eval_threshold, "threshold in evaluation (-1 = threshold)").rule([&o] {
    const double t = o.eval_threshold;
    return t == -1 || (t > 0 && t <= 1) ? std::string() : std::string("-1 (same as threshold) or in (0, 1]");
  });
  f.add("train_granularity", o.train_granularity,
        "stochastic router (THOR) draws in training: batch | token | "
        "sequence | position")
      .one_of(kGranularities);
  f.add("eval_granularity", o.eval_granularity,
        "stochastic router (THOR) draws in evaluation: batch | token | "
        "sequence | position")
      .one_of(kGranularities);
  f.add("hash_by", o.hash_by, "hash router: token (the token id) | position").one_of({"token", "position"});
  f.add("hash_seed", o.hash_seed, "hash router: seed of the fixed hash").at_least(0);
  f.add("mask_padding", o.mask_padding,
        "padding gets no expert, no capacity slot and no count in the balance loss (fairseq's input mask)");
  return std::move(f.fields());
}

void RouterOptions::validate(const std::string& owner, bool config_keys) const {
  MOE_CHECK(d_model >= 1, owner, ".d_model must be >= 1, got ", d_model);
  MOE_CHECK(num_experts >= 1, owner, ".num_experts must be >= 1, got ", num_experts);
  MOE_CHECK(top_k >= 1 && top_k <= num_experts, owner, ".top_k must be in [1, num_experts=", num_experts, "], got ",
            top_k);
  auto copy = *this;
  for (const auto& field : router_option_fields(copy)) field.check(owner, /*by_member=*/!config_keys);
}

double RouterOptions::extra_double(const std::string& key, double fallback) const {
  auto it = extra.find(key);
  return it == extra.end() ? fallback : parse_float_text(it->second, "RouterOptions.extra['" + key + "']");
}

int64_t RouterOptions::extra_int(const std::string& key, int64_t fallback) const {
  auto it = extra.find(key);
  return it == extra.end() ? fallback : parse_int_text(it->second, "RouterOptions.extra['" + key + "']");
}

void RouterSettings::set(const std::string& key, const std::string& text) {
  RouterOptions scratch;
  auto fields = router_option_fields(scratch);
  const auto* field = find_field(fields, key);
  MOE_CHECK(field != nullptr, "unknown router option '", printable(key), "' (known: ", known_keys(fields),
            "; a router of your own reads its settings from [moe.router])");
  field->set(text);  // throws "<key>: expected ..., got '...'" for a malformed value
  values_[key] = field->type == FieldType::kString ? text : field->get();
}

void RouterSettings::set(const std::string& key, double value) { set(key, format_float(value)); }
void RouterSettings::set(const std::string& key, int64_t value) { set(key, std::to_string(value)); }
void RouterSettings::set(const std::string& key, bool value) { set(key, std::string(value ? "true" : "false")); }

std::string RouterSettings::get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return "";
  RouterOptions scratch;
  auto fields = router_option_fields(scratch);
  const auto* field = find_field(fields, key);
  field->set(it->second);
  return field->get();
}

void RouterSettings::apply(RouterOptions& options) const {
  auto fields = router_option_fields(options);
  for (const auto& [key, text] : values_) find_field(fields, key)->set(text);
  if (has("capacity_factor") && !has("eval_capacity_factor"))
    options.capacity.eval_capacity_factor = options.capacity.capacity_factor;
  for (const auto& [key, text] : extra) options.extra[key] = text;
}

}  // namespace moe
