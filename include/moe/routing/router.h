// The routing abstraction. A router turns hidden states into a RoutingPlan (which experts, with
// which combine weights, in which priority, plus named auxiliary losses); everything after the plan
// (capacity, layout, dispatch, experts, combine, statistics) is shared. A new router is one
// header/source pair plus one line in register_builtin_routers() (src/routing/router_registry.cpp);
// see docs/writing-a-router.md. Its options are in moe/routing/router_options.h.
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

#include "moe/ops/dispatch_combine.h"
#include "moe/routing/capacity.h"
#include "moe/routing/router_options.h"

namespace moe {

/// An auxiliary loss term: add coefficient · value to the training objective.
struct AuxLoss {
  at::Tensor value;          ///< 0-dim, unweighted, differentiable
  double coefficient = 0.0;  ///< its weight in the objective
  at::Tensor weighted() const { return value * coefficient; }
};

/// The currency every router produces.
struct RoutingPlan {
  at::Tensor expert_index;  ///< [T, K] int64; -1 = no expert in that slot (variable-k routers pad with -1)
  at::Tensor
      weight;  ///< [T, K] fp32 (fp64 for fp64 inputs), combine weight per slot (0 in empty slots); differentiable
  at::Tensor priority;    ///< optional [T, K] floating, smaller keeps its place first (see build_layout)
  int64_t capacity = -1;  ///< rows each expert keeps at most; -1 = unlimited
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
  /// Optional [T] bool, true at padding rows. With RouterOptions::mask_padding (the default) they get
  /// no expert and no capacity slot, and the balance loss leaves them out of its top-1 counts (both
  /// means still divide by T: fairseq's input mask, papers.md §8.1).
  at::Tensor padding;
  /// Optional [T, E] Gumbel noise for routers that sample (topk's later experts): used instead of
  /// draws from the generator, so that recorded draws of another implementation can be replayed.
  at::Tensor gumbel_noise;
};

/// Base class of every router: a torch::nn::Module (its parameters are checkpointed with the layer).
class RouterImpl : public torch::nn::Module {
 public:
  explicit RouterImpl(RouterOptions options);
  ~RouterImpl() override = default;

  /// hidden: [T, d_model] floating. Returns the plan for these T tokens; training mode
  /// (is_training()) selects training or evaluation capacity and noise. The router's single entry
  /// point: checks the input and the context, calls route_impl(), and checks the plan it returns
  /// (check_plan), so every caller receives a well-formed plan.
  RoutingPlan route(const at::Tensor& hidden, RoutingContext context = {});

  /// The name this router is registered under (set by make_router; "" for one built directly).
  const std::string& name() const { return name_; }

  const RouterOptions& options() const { return options_; }

  /// The random source for sampling and jitter. Unset: LibTorch's default CPU generator, so
  /// torch::manual_seed makes runs reproducible.
  void set_generator(at::Generator generator) { generator_ = std::move(generator); }
  const std::optional<at::Generator>& generator() const { return generator_; }
  /// A caller-supplied source of U(0, 1) draws ([shape] in the options given) replacing the generator
  /// for every draw the router makes (Gumbel noise, jitter, THOR's experts); null = the generator.
  using UniformSource = std::function<at::Tensor(at::IntArrayRef shape, const at::TensorOptions& options)>;
  void set_uniform_source(UniformSource source) { uniform_source_ = std::move(source); }

 protected:
  /// U(0, 1) draws of `shape`: the caller's source when set, else the generator.
  at::Tensor uniform(at::IntArrayRef shape, const at::TensorOptions& options) const;
  /// context.padding when this router masks padding (options_.mask_padding), else undefined.
  at::Tensor mask_padding(const RoutingContext& context) const {
    return options_.mask_padding ? context.padding : at::Tensor();
  }

 public:
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
  UniformSource uniform_source_;

 private:
  friend std::shared_ptr<RouterImpl> make_router(const std::string& name, const RouterOptions& options);
  std::string name_;
};

/// Throws moe::Error naming `router` unless `plan` is well-formed for `num_tokens` tokens:
/// expert_index [T, K] int64, weight [T, K] floating, priority undefined or [T, K], normalisation
/// resolved (not kAuto). Shapes only, no device read: build_layout checks the expert ids.
void check_plan(const RoutingPlan& plan, int64_t num_tokens, const std::string& router);

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

}  // namespace moe

/// Registers router class `Impl` (constructible from a RouterOptions) under `name` when the
/// translation unit is loaded: for routers in plugins (moe/core/plugins.h), whose static initialisers
/// run when moe-train --plugin loads them. Write it once, at namespace scope, in the plugin's source.
#define MOE_REGISTER_ROUTER(name, Impl)                                                                    \
  static const bool moe_router_registered_##Impl = [] {                                                    \
    ::moe::register_router(name, [](const ::moe::RouterOptions& o) { return std::make_shared<Impl>(o); }); \
    return true;                                                                                           \
  }()
