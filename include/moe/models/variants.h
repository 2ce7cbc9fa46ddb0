// The one table of MoE variants an FFN slot of the translation model can hold. Each row says which
// block the slot builds (a dense FFN, an MoELayer with a router, SMoE's stratified block), from which
// preset (each paper's official settings, moe/layers/presets.h: router, k, capacity defaults), how
// the layers' aux losses combine, whether training takes two forward passes (THOR's consistency
// step) and how many experts a token uses nominally. The model (make_ffn_slot, parameter counts), the
// trainer (the two-pass step) and the configuration (validation, --help) read it; nothing else
// compares variant names. Any registered router name is a variant too: an MoELayer with that router
// and moe.top_k (a router of your own included).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "moe/layers/moe_layer.h"
#include "moe/layers/stratified_moe_block.h"

namespace moe {

enum class SlotKind { kDense, kMoELayer, kStratified };
enum class AuxCombine { kSum, kMean };
/// Parses "sum" or "mean"; throws moe::Error otherwise.
AuxCombine parse_aux_combine(const std::string& name);

struct VariantSpec {
  std::string name;
  std::string summary;  ///< one line for --help and docs
  SlotKind kind = SlotKind::kMoELayer;
  std::string router;       ///< the registered router of kMoELayer (kStratified: the per-stratum gate)
  int64_t fixed_top_k = 0;  ///< k this variant always uses; 0 = moe.top_k (router option top_k)
  AuxCombine aux_combine = AuxCombine::kSum;  ///< how the layers' aux losses combine (moe.aux_combine = auto)
  bool two_pass = false;                      ///< training runs the model twice (THOR's consistency loss)
  /// Experts a token uses, for parameter counts before anything is measured: 0 = the resolved k;
  /// < 0 = variable (XMoE's threshold, SMoE's passes), counted as 2 until measured.
  double nominal_experts_per_token = 0;
  /// kMoELayer: the layer's options for width d, E experts of hidden size h and k (before the
  /// model's activation and the user's router settings are applied).
  std::function<MoELayerOptions(int64_t d, int64_t E, int64_t h, int64_t k)> layer;
  /// kMoELayer, optional: the block to build from those options (a layer variant of your own, e.g.
  /// one built from several routing passes); unset = an MoELayer.
  std::function<std::shared_ptr<FeedForwardBlockImpl>(const MoELayerOptions&)> make_block;
  /// kStratified: the block's options (strata, expert hidden size h, the model's dropout).
  std::function<StratifiedMoEBlockOptions(int64_t d, const std::vector<int64_t>& strata, int64_t h, double dropout)>
      block;
};

/// The row of `name`: a built-in variant or any registered router. Throws moe::Error naming `owner`
/// and listing both otherwise.
VariantSpec variant_spec(const std::string& name, const std::string& owner = "variant");
/// Built-in variant names in table order (dense, switch, gshard, topk, xmoe, thor, smoe, expert_choice, hash).
std::vector<std::string> builtin_variant_names();

}  // namespace moe
