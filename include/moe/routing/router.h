// The routing abstraction. A router turns hidden states into a RoutingPlan (which experts, with
// which combine weights, in which priority, plus named auxiliary losses); everything after the plan
// (capacity, layout, dispatch, experts, combine, statistics) is shared. A new router is one
// header/source pair plus one line in register_builtin_routers() (src/routing/registry.cpp); see
// docs/writing-a-router.md.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moe/routing/capacity.h"

namespace moe {

/// How the combine weights of a token's slots are normalised.
enum class WeightNormalization {
  kAuto,      ///< resolved by the router: kNone for top_k = 1 (Switch), kKept for top_k >= 2 (GShard)
  kNone,      ///< raw router probabilities (Switch, XMoE)
  kSelected,  ///< divided by their sum over the selected slots, before capacity drops
  kKept,      ///< divided by their sum over the slots that survive capacity (GShard/fairseq default)
};
WeightNormalization parse_weight_normalization(const std::string& name);
std::string to_string(WeightNormalization normalization);

/// How top-k picks its second and later experts.
enum class SecondExpertPolicy {
  kGreedy,    ///< the next-highest probabilities
  kSampling,  ///< argmax of logits + Gumbel noise, earlier picks masked (fairseq/GShard default)
};
SecondExpertPolicy parse_second_expert_policy(const std::string& name);
std::string to_string(SecondExpertPolicy policy);

/// An auxiliary loss term: add coefficient · value to the training objective.
struct AuxLoss {
  at::Tensor value;          ///< 0-dim, unweighted, differentiable
  double coefficient = 0.0;  ///< its weight in the objective
  at::Tensor weighted() const { return value * coefficient; }
};

/// The currency every router produces.
struct RoutingPlan {
  at::Tensor expert_index;  ///< [T, K] int64; -1 = no expert in that slot (variable-k routers pad with -1)
  at::Tensor weight;        ///< [T, K] fp32 (fp64 for fp64 inputs), combine weight per slot (0 in empty slots); differentiable
  at::Tensor priority;      ///< optional [T, K] floating, smaller keeps its place first (see build_layout)
  int64_t capacity = -1;    ///< rows each expert keeps at most; -1 = unlimited
  WeightNormalization normalization = WeightNormalization::kNone;  ///< applied after capacity
  std::map<std::string, AuxLoss> aux_losses;                       ///< e.g. "balance", "z"
};

/// What a router may know about the tokens besides their hidden states.
struct RoutingContext {
  /// The input's leading dimensions, e.g. {B, S} for a [B, S, d] input (batch-major); their product is T.
  /// route() fills {T} when empty.
  std::vector<int64_t> leading_shape;
  /// Optional [T] int64 token ids (hash routing by token id).
  at::Tensor token_ids;
};

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
  uint64_t hash_seed = 0;  ///< seed of the fixed hash
  std::map<std::string, std::string> extra;

  /// Checks the shared fields; `owner` prefixes messages ("MoELayerOptions.router_options").
  void validate(const std::string& owner = "RouterOptions") const;
  double extra_double(const std::string& key, double fallback) const;
  int64_t extra_int(const std::string& key, int64_t fallback) const;
};

/// Base class of every router: a torch::nn::Module (its parameters are checkpointed with the layer).
class RouterImpl : public torch::nn::Module {
 public:
  explicit RouterImpl(RouterOptions options);
  ~RouterImpl() override = default;

  /// hidden: [T, d_model] floating. Returns the plan for these T tokens; training mode
  /// (is_training()) selects training or evaluation capacity and noise. Checks the input and the
  /// context, then calls route_impl().
  RoutingPlan route(const at::Tensor& hidden, RoutingContext context = {});

  const RouterOptions& options() const { return options_; }

  /// The random source for sampling and jitter. Unset: LibTorch's default CPU generator, so
  /// torch::manual_seed makes runs reproducible.
  void set_generator(at::Generator generator) { generator_ = std::move(generator); }
  const std::optional<at::Generator>& generator() const { return generator_; }

 protected:
  /// What a router implements. hidden: [T, d_model] floating, contiguous; context.leading_shape is
  /// filled and multiplies to T; context.token_ids is [T] int64 when defined.
  virtual RoutingPlan route_impl(const at::Tensor& hidden, const RoutingContext& context) = 0;

  /// Registers the usual bias-free router projection as parameter "weight" [num_experts, d_model],
  /// initialised like nn.Linear(d, E, bias=False): U(-1/sqrt(d), 1/sqrt(d)).
  at::Tensor register_router_weight();
  /// Re-draws a weight made by register_router_weight.
  void reset_router_weight(at::Tensor& weight) const;

  RouterOptions options_;
  std::optional<at::Generator> generator_;
};

/// Router logits [T, E] = hidden [T, d] · weight [E, d]^T, computed in fp32 whatever the model dtype
/// (fp64 when either input is fp64), as every official router does.
at::Tensor router_logits(const at::Tensor& hidden, const at::Tensor& weight);

using RouterFactory = std::function<std::shared_ptr<RouterImpl>(const RouterOptions&)>;

/// Adds a router under `name`; throws moe::Error if the name is taken.
void register_router(const std::string& name, RouterFactory factory);
/// Builds the router registered under `name`; throws moe::Error listing the known names otherwise.
std::shared_ptr<RouterImpl> make_router(const std::string& name, const RouterOptions& options);
/// Registered router names, sorted.
std::vector<std::string> known_routers();

/// Applies `normalization` to a plan's weights once the layout is known.
/// weight: [T, K] floating; selected: [T, K] bool, true where the slot names an expert;
/// kept: [T, K] bool, true where the slot survived capacity.
/// Returns [T, K] in weight's dtype; dropped and empty slots get 0. kKept and kSelected divide by
/// max(sum, eps) with eps the dtype's epsilon (fairseq), so a token with nothing kept gets zeros.
at::Tensor normalize_combine_weights(const at::Tensor& weight, const at::Tensor& selected, const at::Tensor& kept,
                                     WeightNormalization normalization);

}  // namespace moe
