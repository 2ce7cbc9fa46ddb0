// MoELayer: one routing pass (router -> RoutingPlan -> DispatchLayout -> dispatch -> ExpertBank ->
// combine; moe/layers/routing_pass.h), the whole data path of one sparse feed-forward layer,
// returning its output and MoEStats. DenseFFN has the same interface (FeedForwardBlockImpl), so a
// model's FFN slot can hold either, or SMoE's StratifiedMoEBlock, and comparisons are like for like.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <memory>
#include <string>

#include "moe/layers/expert_bank.h"
#include "moe/layers/moe_stats.h"
#include "moe/parallel/communicator.h"
#include "moe/routing/router.h"

namespace moe {

struct MoEOutput {
  at::Tensor output;  ///< the input's shape and dtype
  MoEStats stats;
};

/// What a transformer FFN slot holds: forward(x [..., d]) -> MoEOutput.
class FeedForwardBlockImpl : public torch::nn::Module {
 public:
  /// x: [..., d_model]; token_ids: optional int64 with x's leading shape (for hash routing);
  /// padding: optional bool with x's leading shape, true at padding positions: routers that mask
  /// padding (RouterOptions::mask_padding, the default) give them no expert, no capacity slot and no
  /// weight in the balance loss's counts (fairseq's input mask); their output rows are 0.
  MoEOutput forward(const at::Tensor& x, const at::Tensor& token_ids = at::Tensor(),
                    const at::Tensor& padding = at::Tensor()) {
    return forward_impl(x, token_ids, padding);
  }
  /// True when the output already contains the residual stream (SMoE's block), so a transformer
  /// layer must not add x again; false for an ordinary FFN output.
  virtual bool includes_residual() const { return false; }
  /// The block's experts (this process's shard of them), or null for a dense block.
  virtual const ExpertBankImpl* expert_bank() const { return nullptr; }

 protected:
  virtual MoEOutput forward_impl(const at::Tensor& x, const at::Tensor& token_ids, const at::Tensor& padding) = 0;
};

struct MoELayerOptions {
  MoELayerOptions() = default;
  /// Convenience: d_model, E experts of hidden size h, top-k routing; the rest defaulted.
  MoELayerOptions(int64_t d_model, int64_t num_experts, int64_t hidden, int64_t top_k = 2);

  int64_t d_model = 0;           ///< d: input and output width
  int64_t num_experts = 0;       ///< E
  std::string router = "topk";   ///< a name from known_routers()
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

  const ExpertBankImpl* expert_bank() const override { return experts.get(); }

 protected:
  MoEOutput forward_impl(const at::Tensor& x, const at::Tensor& token_ids, const at::Tensor& padding) override;

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
  MoEOutput forward_impl(const at::Tensor& x, const at::Tensor& token_ids, const at::Tensor& padding) override;
};
TORCH_MODULE(DenseFFN);

}  // namespace moe
