// The encoder-decoder Transformer for translation (Vaswani et al. 2017) with an FFN slot in every
// layer that holds a dense FFN or any MoE variant (moe/layers). Pre-LN (default) or post-LN,
// shared input/output embeddings, sinusoidal positions, padding and causal masks, and incremental
// decoding with a key/value cache (DecoderState) for beam search.
//
// MoE placement makes each paper's layout a config (papers.md):
//   layer i (counted from index_base) is an MoE layer when i % every == 0, in the encoder, the
//   decoder or both. SMoE and XMoE: every=2, index_base=1 (layers 2, 4, 6; XMoE MT: encoder only);
//   THOR: every=2, index_base=0 (layers 0, 2, 4).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <vector>

#include "moe/layers/attention.h"
#include "moe/layers/moe_layer.h"
#include "moe/models/variants.h"

namespace moe {

/// What goes into the FFN slots chosen by the placement rule (the others hold dense FFNs).
struct MoESlotOptions {
  /// A row of the variant table (moe/models/variants.h: dense, switch, gshard, topk, xmoe, thor,
  /// smoe, expert_choice, hash) or any registered router name (an MoELayer with that router).
  std::string variant = "dense";
  /// Plug-in libraries to load first (comma-separated paths; moe/core/plugins.h): routers of your
  /// own, named by `variant`. Recorded with every checkpoint, so moe-translate loads them too.
  std::string plugins;
  int64_t num_experts = 8;         ///< E per MoE layer (smoe: the sum of strata)
  int64_t expert_hidden = 0;       ///< h of each expert; 0 = the model's ffn_hidden
  int64_t every = 2;               ///< an MoE layer every `every` layers (1 = all)
  int64_t index_base = 1;          ///< 1: layers 2, 4, ... (SMoE, XMoE); 0: layers 0, 2, ... (THOR)
  std::string placement = "both";  ///< encoder | decoder | both
  std::string strata = "4,4";      ///< smoe: experts per stratum; must sum to num_experts
  double thor_alpha = 1.0;         ///< THOR consistency weight α (its IWSLT script: 5); two-pass variants
  /// How layer aux losses combine: "sum" (Switch/GShard/XMoE) or "mean" (SMoE); "auto" = the variant's.
  std::string aux_combine = "auto";
  /// The router options set explicitly (keys of router_option_fields: top_k, capacity_factor,
  /// threshold, jitter, ...) and the settings of a router of your own (router.extra); everything else
  /// keeps the variant's preset. E.g. router.set("threshold", 0.8).
  RouterSettings router;

  bool is_moe() const;
  /// True when layer `index` (0-based) of the encoder (is_decoder false) or decoder is an MoE layer.
  bool is_moe_layer(int64_t index, bool is_decoder) const;
  AuxCombine resolved_aux_combine() const;
  /// The router options every MoE slot of a d_model-wide model uses: the variant's preset with the
  /// explicit settings applied (SMoE: before each stratum's gate takes its expert count).
  RouterOptions resolved_router_options(int64_t d_model) const;
  /// Throws moe::Error naming `owner` (slot keys) and `router_owner` (router keys; default
  /// owner + ".router").
  void validate(const std::string& owner = "MoESlotOptions", const std::string& router_owner = "") const;
};

struct TransformerOptions {
  int64_t vocab_size = 0;  ///< V (shared source/target vocabulary)
  int64_t padding_idx = 0;
  int64_t d_model = 512;
  int64_t heads = 8;
  int64_t encoder_layers = 6;
  int64_t decoder_layers = 6;
  int64_t ffn_hidden = 2048;
  std::string activation = "relu";  ///< relu | gelu | swiglu
  double dropout = 0.1;             ///< residual, embedding (and SMoE in-expert) dropout
  double attention_dropout = 0.0;
  double activation_dropout = 0.0;
  bool pre_norm = true;  ///< false: post-LN (the original Transformer, THOR's IWSLT arch)
  int64_t max_positions = 1024;
  bool scale_embedding = true;  ///< multiply token embeddings by sqrt(d)
  MoESlotOptions moe;
  /// Throws moe::Error naming `owner`.<field>, and `moe_owner` (default owner + ".moe") for the slot
  /// keys; router keys are named `router_owner`.<key> (default moe_owner + ".router").
  void validate(const std::string& owner = "TransformerOptions", const std::string& moe_owner = "",
                const std::string& router_owner = "") const;
};

/// Builds the FFN-slot module of encoder (is_decoder false) or decoder layer `index`, from the
/// variant table. expert_group: expert parallelism (MoELayerOptions::expert_group); null = every
/// expert in this process.
std::shared_ptr<FeedForwardBlockImpl> make_ffn_slot(const TransformerOptions& options, int64_t index, bool is_decoder,
                                                    const std::shared_ptr<Communicator>& expert_group = nullptr);

/// Statistics of one MoE slot in one forward call.
struct LayerStats {
  std::string name;  ///< "encoder.1", "decoder.3" (0-based layer index)
  MoEStats stats;
};

struct EncoderOutput {
  at::Tensor output;   ///< [B, S, d]
  at::Tensor padding;  ///< [B, S] bool, true at padding
};

/// Incremental-decoding state: the encoder output and per-layer key/value caches of N hypotheses.
struct DecoderState {
  EncoderOutput encoder;
  std::vector<KVCache> self_attention, cross_attention;  ///< one per decoder layer
  int64_t step = 0;                                      ///< tokens decoded so far (the next position)
  /// Keeps hypotheses `index` ([N'] int64): beam reordering and dropping finished sentences.
  void select(const at::Tensor& index);
};

class TransformerEncoderLayerImpl : public torch::nn::Module {
 public:
  TransformerEncoderLayerImpl(const TransformerOptions& options, int64_t index,
                              const std::shared_ptr<Communicator>& expert_group = nullptr);
  /// x [B, S, d]; padding [B, S] bool; token_ids [B, S] int64. Appends MoE stats to `stats`.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& padding, const at::Tensor& token_ids,
                     std::vector<LayerStats>* stats);
  TransformerOptions options;
  int64_t index;
  MultiheadAttention self_attn{nullptr};
  torch::nn::LayerNorm self_attn_norm{nullptr}, ffn_norm{nullptr};
  std::shared_ptr<FeedForwardBlockImpl> ffn;  ///< "ffn"
};
TORCH_MODULE(TransformerEncoderLayer);

class TransformerDecoderLayerImpl : public torch::nn::Module {
 public:
  TransformerDecoderLayerImpl(const TransformerOptions& options, int64_t index,
                              const std::shared_ptr<Communicator>& expert_group = nullptr);
  /// x [B, T, d]; encoder as produced by TransformerModel::encode; token_ids [B, T] int64.
  /// self_cache / cross_cache: non-null during incremental decoding.
  at::Tensor forward(const at::Tensor& x, const EncoderOutput& encoder, const at::Tensor& token_ids,
                     std::vector<LayerStats>* stats, KVCache* self_cache = nullptr, KVCache* cross_cache = nullptr);
  TransformerOptions options;
  int64_t index;
  MultiheadAttention self_attn{nullptr}, cross_attn{nullptr};
  torch::nn::LayerNorm self_attn_norm{nullptr}, cross_attn_norm{nullptr}, ffn_norm{nullptr};
  std::shared_ptr<FeedForwardBlockImpl> ffn;  ///< "ffn"
};
TORCH_MODULE(TransformerDecoderLayer);

struct ModelOutput {
  at::Tensor logits;            ///< [B, T, V] in the model's dtype
  std::vector<LayerStats> moe;  ///< one entry per MoE slot (encoder first)
  at::Tensor aux_loss;          ///< 0-dim: the MoE aux losses combined per moe.aux_combine (0 if none)
};

/// Parameter counts; "active" counts each MoE layer's experts at `experts_per_token` (measured).
struct ParameterCount {
  int64_t total = 0;
  int64_t embedding = 0;  ///< the shared embedding matrix (also the output projection)
  int64_t expert = 0;     ///< all expert parameters
  double active = 0;      ///< parameters a token uses: non-expert + per MoE layer experts_per_token · one expert
  double forward_flops_per_token = 0;  ///< 2 · active matmul parameters of one source + one target token
  double expert_flops_per_token = 0;   ///< the part of forward_flops_per_token spent in the MoE slots' experts
};

class TransformerModelImpl : public torch::nn::Module {
 public:
  /// expert_group: the group over which every MoE slot shards its experts (expert parallelism; see
  /// MoELayerOptions::expert_group); null = every expert in this process.
  explicit TransformerModelImpl(const TransformerOptions& options,
                                const std::shared_ptr<Communicator>& expert_group = nullptr);

  /// source [B, S] int64 (padded with padding_idx). Returns the encoder output; MoE stats are
  /// appended to `stats` when non-null.
  EncoderOutput encode(const at::Tensor& source, std::vector<LayerStats>* stats = nullptr);
  /// Teacher-forced decoder: target_input [B, T] int64 -> logits [B, T, V].
  at::Tensor decode(const at::Tensor& target_input, const EncoderOutput& encoder,
                    std::vector<LayerStats>* stats = nullptr);
  /// source [B, S], target_input [B, T] int64 -> logits, stats and combined aux loss.
  ModelOutput forward(const at::Tensor& source, const at::Tensor& target_input);

  /// Incremental decoding: state for the N = B hypotheses of `encoder`.
  DecoderState start_decoding(const EncoderOutput& encoder) const;
  /// tokens [N] int64, the previous token of each hypothesis -> log-probabilities [N, V] fp32.
  at::Tensor decode_step(DecoderState& state, const at::Tensor& tokens, std::vector<LayerStats>* stats = nullptr);

  /// The combined MoE aux loss of one forward call (sum or mean over layers; 0-dim 0 if none).
  at::Tensor combine_aux_losses(const std::vector<LayerStats>& stats) const;
  /// Names of the MoE slots, in forward order ("encoder.1", ...).
  std::vector<std::string> moe_layer_names() const;
  /// experts_per_token: per MoE slot name, the measured mean (missing = the variant's nominal
  /// experts per token; SMoE and XMoE must be measured, else counted as 2).
  ParameterCount count_parameters(const std::map<std::string, double>& experts_per_token = {}) const;

  TransformerOptions options;
  torch::nn::Embedding embed{nullptr};  ///< "embed" [V, d], shared by encoder, decoder and output
  torch::nn::ModuleList encoder_layers{nullptr}, decoder_layers{nullptr};
  torch::nn::LayerNorm encoder_norm{nullptr}, decoder_norm{nullptr};  ///< pre-LN only

 private:
  at::Tensor embed_tokens(const at::Tensor& tokens, int64_t first_position);
  /// sinusoidal_positions(0, max_positions, d) on the device of the last forward: copied there once,
  /// not in every forward (a blocking copy each time). Not a parameter or buffer: checkpoints skip it.
  at::Tensor positions_;
  at::Tensor output_logits(const at::Tensor& x);
};
TORCH_MODULE(TransformerModel);

/// Sinusoidal position embeddings (fairseq's layout: sin half then cos half), [length, d] fp32,
/// for positions first .. first + length - 1.
at::Tensor sinusoidal_positions(int64_t first, int64_t length, int64_t d_model);

}  // namespace moe
