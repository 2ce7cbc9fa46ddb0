// SMoE's stratified MoE block (Xu et al. 2023, "Towards Being Parameter-Efficient: A Stratified
// Sparsely Activated Transformer with Dynamic Capacity"; official code
// fe1ixxu/Stratified_Mixture_of_Experts), as its code behaves:
//   E experts split into L ordered strata (e.g. "4,12"); stratum s has its own gate that sees only
//   the experts of stratum s and later (global ids; the earlier ones are never chosen);
//   every token starts at stratum 0; a pass routes the tokens waiting at the lowest stratum s with
//   that gate (top-2, second expert Gumbel-sampled, also in evaluation by default), capacity
//   2·ceil(T_s / E_visible) in training and ceil(f·T_s) in evaluation (f = 1.0: nothing dropped),
//   weights renormalised over kept experts, residual update h += MoE(LN_s(h)) for those tokens, and
//   moves each to stratum(pre-capacity top-1 expert) + 1; tokens at stratum L are done;
//   LayerNorms: stratum 0 reads the layer's pre-FFN LayerNorm (input_norm), stratum s >= 1 its own,
//   and the block output is the exit LayerNorm of the final residual stream (stratum_layernorm on,
//   the official --hmoe-layernorm 1); the balance loss is averaged over the executed passes.
// Each pass is an ordinary routing pass over the active tokens (moe/layers/routing_pass.h: the same
// layout, dispatch, ExpertBank and combine as MoELayer), and its statistics are merged with
// merge_stats. The block's output already contains the residual stream
// (includes_residual() is true): a transformer layer uses it as the layer's new hidden state.
// Gates see the active tokens as one flat sequence (RoutingContext::leading_shape = {T_active}), so
// position-based routing (hash by position, stochastic per sequence/position) is not meaningful here.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/normalization.h>

#include <string>
#include <vector>

#include "moe/layers/moe_layer.h"

namespace moe {

/// Parses strata sizes such as "4,12" or "2,2,2,2"; throws moe::Error for empty, malformed or
/// non-positive entries.
std::vector<int64_t> parse_strata(const std::string& spec);

struct StratifiedMoEBlockOptions {
  StratifiedMoEBlockOptions() = default;
  /// d_model, strata sizes (E = their sum), expert hidden size; SMoE's defaults for the rest:
  /// top-2 gates with Gumbel sampling also in evaluation, GShard capacity 2·ceil(T/E_visible),
  /// evaluation token fraction 1.0, balance coefficient 0.01.
  StratifiedMoEBlockOptions(int64_t d_model, std::vector<int64_t> strata, int64_t hidden);

  int64_t d_model = 0;
  std::vector<int64_t> strata;    ///< experts per stratum, in order; each >= 1
  std::string router = "topk";    ///< the per-stratum gate (any registered router)
  RouterOptions router_options;   ///< d_model and num_experts are set per stratum by the block
  ExpertBankOptions experts;      ///< num_experts must equal the sum of strata
  bool input_layernorm = true;    ///< LayerNorm before stratum 0 (the transformer layer's pre-FFN norm)
  bool stratum_layernorm = true;  ///< per-stratum LayerNorms and the exit LayerNorm (official: on)
  double layernorm_eps = 1e-5;
  bool check_finite = false;
  /// Expert parallelism (see MoELayerOptions::expert_group). The ranks agree on the number of passes
  /// through an all-reduce(min) of the next stratum, as the official code does; a rank with no token
  /// at a stratum still takes part in that pass's exchange. Capacity and the aux-loss mean over
  /// passes use this rank's own tokens and the passes in which it had tokens (local semantics).
  std::shared_ptr<Communicator> expert_group;

  int64_t num_experts() const;
  void validate() const;
};

class StratifiedMoEBlockImpl : public FeedForwardBlockImpl {
 public:
  explicit StratifiedMoEBlockImpl(const StratifiedMoEBlockOptions& options);
  bool includes_residual() const override { return true; }
  const ExpertBankImpl* expert_bank() const override { return experts.get(); }

  StratifiedMoEBlockOptions options;
  std::vector<std::shared_ptr<RouterImpl>> gates;  ///< registered as "gate0", "gate1", ...
  torch::nn::LayerNorm input_norm{nullptr};        ///< "input_norm" (when input_layernorm)
  torch::nn::ModuleList stratum_norms{nullptr};    ///< "stratum_norms": [s-1] before stratum s >= 1, [L-1] exit
  ExpertBank experts{nullptr};                     ///< "experts", global ids 0..E-1 (this rank's shard)

 protected:
  /// x: [..., d_model], the residual stream entering the FFN sub-layer. Returns the new residual
  /// stream (exit-normalised when stratum_layernorm) and MoEStats with passes_per_token (SMoE's
  /// "requested capacity") and the balance loss averaged over passes.
  MoEOutput forward_impl(const at::Tensor& x, const at::Tensor& token_ids, const at::Tensor& padding) override;

 private:
  std::vector<int64_t> first_expert_;  ///< global id of each stratum's first expert
  std::vector<int64_t> stratum_of_;    ///< stratum of each global expert id
  at::Tensor stratum_table_;           ///< stratum_of_ as [E] int64 on the device of the last input
  at::Tensor grad_anchor_;             ///< see all_to_all_rows
  /// The smallest next stratum over the expert-parallel group (this rank's own without a group).
  int64_t agree_on_stratum(int64_t local) const;
};
TORCH_MODULE(StratifiedMoEBlock);

}  // namespace moe
