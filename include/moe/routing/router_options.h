// The options every router reads, listed once. RouterOptions is the typed struct routers receive;
// router_option_fields() is its one list of keys (name, help, type, what is allowed), from which
// come the config keys moe.<key> of the translation trainer, their --moe.<key> command-line options,
// the --dump-config lines and every range check (RouterOptions::validate). RouterSettings holds
// the keys a user set explicitly and applies them over a preset (a variant's defaults), plus the
// settings of routers written outside the library ([moe.router] in a config file -> extra).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "moe/core/option_fields.h"
#include "moe/ops/dispatch_combine.h"
#include "moe/routing/capacity.h"

namespace moe {

/// How top-k picks its second and later experts.
enum class SecondExpertPolicy {
  kGreedy,    ///< the next-highest probabilities
  kSampling,  ///< argmax of logits + Gumbel noise, earlier picks masked (fairseq/GShard default)
};
SecondExpertPolicy parse_second_expert_policy(const std::string& name);
std::string to_string(SecondExpertPolicy policy);

/// Options shared by every router. Fields a router does not use are ignored by it; `extra` carries
/// parameters of routers written outside the library (read with extra_double / extra_int).
struct RouterOptions {
  int64_t d_model = 0;      ///< width of the hidden states routed; set by MoELayer
  int64_t num_experts = 0;  ///< E; set by MoELayer
  int64_t top_k = 2;        ///< K: 1 = Switch, 2 = GShard; in [1, E] (fixed-k routers)
  CapacityOptions capacity;
  SecondExpertPolicy second_expert_policy = SecondExpertPolicy::kSampling;
  bool sample_in_eval = false;  ///< keep Gumbel sampling of later experts in evaluation (fairseq: true)
  WeightNormalization normalization = WeightNormalization::kAuto;
  /// Switch input jitter: in training the router input is multiplied by U(1-ε, 1+ε). 0 = off. In [0, 1).
  double jitter = 0.0;
  double balance_loss_coef = 0.01;  ///< Switch/GShard load-balancing loss coefficient (>= 0)
  double z_loss_coef = 0.0;         ///< ST-MoE router z-loss coefficient (>= 0)
  /// XMoE threshold t in (0, 1]: keep experts while the cumulative probability before them is < t.
  double threshold = 0.9;
  /// Threshold in evaluation; -1 = the same as `threshold`. Dense-to-sparse (XMoE): threshold 1 in
  /// training (every expert), eval_threshold < 1.
  double eval_threshold = -1;
  /// THOR: how often the stochastic router draws an expert, in training and in evaluation.
  std::string train_granularity = "batch";  ///< batch | token | sequence | position
  std::string eval_granularity = "token";   ///< batch | token | sequence | position
  /// Hash routing: hash the token id ("token") or the position in the sequence ("position").
  std::string hash_by = "token";
  int64_t hash_seed = 0;  ///< seed of the fixed hash (>= 0)
  /// Padding rows (RoutingContext::padding) get no expert, no capacity slot and no place in the
  /// balance loss's counts (fairseq's input mask); false: routed like any token (XMoE's official code).
  bool mask_padding = true;
  /// Settings of routers written outside the library, by name (a config file's [moe.router] table).
  std::map<std::string, std::string> extra;

  /// Checks every field; `owner` prefixes messages ("MoELayerOptions.router_options.jitter must be in
  /// [0, 1), got 2"). config_keys: name fields by their config key ("moe.aux_weight") instead of the
  /// C++ member ("...balance_loss_coef").
  void validate(const std::string& owner = "RouterOptions", bool config_keys = false) const;
  /// extra[key] as a number / an integer, or `fallback` when absent; throws moe::Error naming the key
  /// when the text is not one.
  double extra_double(const std::string& key, double fallback) const;
  int64_t extra_int(const std::string& key, int64_t fallback) const;
};

/// The one list of router option keys (everything but d_model, num_experts and extra): the config
/// keys moe.<key>. Each field refers to `options`.
std::vector<OptionField> router_option_fields(RouterOptions& options);

/// Router options set explicitly, by key; the others keep a preset's values when applied.
class RouterSettings {
 public:
  /// Sets `key` (a name from router_option_fields) from text; throws moe::Error naming the key for
  /// an unknown key or a malformed value (ranges are checked by RouterOptions::validate).
  void set(const std::string& key, const std::string& text);
  void set(const std::string& key, double value);
  void set(const std::string& key, int64_t value);
  void set(const std::string& key, bool value);
  void set(const std::string& key, const char* text) { set(key, std::string(text)); }
  void unset(const std::string& key) { values_.erase(key); }
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  /// The TOML literal of an explicit key ("" when unset).
  std::string get(const std::string& key) const;
  const std::map<std::string, std::string>& values() const { return values_; }

  /// Settings of an outside router (RouterOptions::extra), any key.
  std::map<std::string, std::string> extra;

  /// Writes every explicit key into `options` (a preset), then `extra`. Rule: capacity_factor set
  /// without eval_capacity_factor sets both (γ in training and evaluation).
  void apply(RouterOptions& options) const;

 private:
  std::map<std::string, std::string> values_;  ///< key -> TOML literal
};

}  // namespace moe
