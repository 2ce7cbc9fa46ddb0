// MoELayer: router -> RoutingPlan -> DispatchLayout -> dispatch -> ExpertBank -> combine, the whole
// data path of one sparse feed-forward layer, returning its output and MoEStats. DenseFFN has the
// same interface, so a model's FFN slot can hold either (and comparisons are like for like).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <memory>
#include <string>

#include "moe/layers/expert_bank.h"
#include "moe/parallel/communicator.h"
#include "moe/routing/router.h"

namespace moe {

/// Throws moe::Error naming `router` unless `plan` is well-formed for `num_tokens` tokens.
void check_plan(const RoutingPlan& plan, int64_t num_tokens, const std::string& router);

/// Statistics of one layer call. Tensors stay where they were computed; to_string() reads them.
struct MoEStats {
  int64_t num_tokens = 0;
  at::Tensor tokens_per_expert;     ///< [E] int64, rows each expert processed (after capacity)
  at::Tensor requested_per_expert;  ///< [E] int64, assignments before capacity
  at::Tensor dropped_fraction;      ///< [] fp32, dropped assignments / selected assignments
  at::Tensor experts_per_token;     ///< [] fp32, mean experts that processed a token (after capacity)
  at::Tensor selected_per_token;    ///< [] fp32, mean experts selected per token (before capacity)
  at::Tensor passes_per_token;      ///< [] fp32, routing passes per token (SMoE's requested capacity; 1 otherwise)
  at::Tensor experts_per_token_histogram;  ///< [K_max + 1] int64: tokens processed by 0, 1, ... experts
  /// Expert FLOPs per token relative to top-k over the same experts: experts_per_token / k.
  double relative_expert_flops(int64_t k) const;
  std::map<std::string, AuxLoss> aux_losses;  ///< by name, e.g. "balance", "z"

  /// Σ coefficient · value over aux_losses with a non-zero coefficient: a 0-dim tensor to add to the
  /// objective (0 if none).
  at::Tensor total_aux_loss() const;
  /// One line: "tokens=.. dropped=..% experts/token=.. balance=.. z=.. load=[..]".
  std::string to_string() const;
};

struct MoEOutput {
  at::Tensor output;  ///< the input's shape and dtype
  MoEStats stats;
};

/// What a transformer FFN slot holds: forward(x [..., d]) -> MoEOutput.
class FeedForwardBlockImpl : public torch::nn::Module {
 public:
  /// x: [..., d_model]; token_ids: optional int64 with x's leading shape (for hash routing).
  MoEOutput forward(const at::Tensor& x, const at::Tensor& token_ids = at::Tensor()) {
    return forward_impl(x, token_ids);
  }
  /// True when the output already contains the residual stream (SMoE's block), so a transformer
  /// layer must not add x again; false for an ordinary FFN output.
  virtual bool includes_residual() const { return false; }

 protected:
  virtual MoEOutput forward_impl(const at::Tensor& x, const at::Tensor& token_ids) = 0;
};

struct MoELayerOptions {
  MoELayerOptions() = default;
  /// Convenience: d_model, E experts of hidden size h, top-k routing; the rest defaulted.
  MoELayerOptions(int64_t d_model, int64_t num_experts, int64_t hidden, int64_t top_k = 2);

  int64_t d_model = 0;      ///< d: input and output width
  int64_t num_experts = 0;  ///< E
  std::string router = "topk";  ///< a name from known_routers()
  RouterOptions router_options;  ///< d_model and num_experts must equal the layer's
  ExpertBankOptions experts;     ///< ffn.d_model and num_experts must equal the layer's
  /// Check every input for NaN/Inf (one extra pass and a host read per call).
  bool check_finite = false;
  /// Expert parallelism: the group over which the experts are sharded by global id (rank r of P holds
  /// [r·E/P, (r+1)·E/P); E must be divisible by P). Null or a group of one: every expert here. Every
  /// rank of the group must call forward (and backward) the same number of times, with any number of
  /// tokens including zero. The router is replicated: its gradients are reduced by data parallelism.
  std::shared_ptr<Communicator> expert_group;

  /// Throws moe::Error naming the field, the value and what is allowed.
  void validate() const;
};

/// A sparse Mixture-of-Experts feed-forward layer.
/// Example:
///   moe::MoELayer layer(moe::MoELayerOptions(/*d_model=*/512, /*num_experts=*/8, /*hidden=*/2048, /*top_k=*/2));
///   auto out = layer->forward(x);              // x: [B, S, 512] fp32
///   loss = task_loss + out.stats.total_aux_loss();
class MoELayerImpl : public FeedForwardBlockImpl {
 public:
  explicit MoELayerImpl(const MoELayerOptions& options);

  // forward(x, token_ids): x [..., d_model] (at least 2-D; leading dims are flattened to T tokens,
  // and passed to the router as RoutingContext::leading_shape), floating, on the layer's device and in
  // its parameters' dtype, any strides; token_ids optional int64 of x's leading shape. Returns the
  // output in x's shape.

  MoELayerOptions options;
  std::shared_ptr<RouterImpl> router;  ///< registered as "router"
  ExpertBank experts{nullptr};         ///< registered as "experts" (this rank's shard)

 protected:
  MoEOutput forward_impl(const at::Tensor& x, const at::Tensor& token_ids) override;

 private:
  at::Tensor grad_anchor_;  ///< keeps the expert exchange in every rank's backward (see all_to_all_rows)
};
TORCH_MODULE(MoELayer);

struct DenseFFNOptions {
  FFNOptions ffn;
  bool check_finite = false;
  void validate() const { ffn.validate("DenseFFNOptions.ffn"); }
};

/// A dense FFN behind the FFN-slot interface (stats: one "expert" taking every token, no aux losses).
class DenseFFNImpl : public FeedForwardBlockImpl {
 public:
  explicit DenseFFNImpl(const DenseFFNOptions& options);

  DenseFFNOptions options;
  FFN ffn{nullptr};  ///< registered as "ffn"

 protected:
  /// x: [..., d_model] floating. Returns the output in x's shape; token_ids are ignored.
  MoEOutput forward_impl(const at::Tensor& x, const at::Tensor& token_ids) override;
};
TORCH_MODULE(DenseFFN);

}  // namespace moe
