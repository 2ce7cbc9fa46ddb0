// The encoder-decoder Transformer with FFN slots (see moe/models/transformer.h).
#include "moe/models/transformer.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>

#include "moe/core/error.h"
#include "moe/layers/presets.h"
#include "moe/layers/stratified_moe_block.h"

namespace moe {
namespace {

const std::vector<std::string>& builtin_variants() {
  static const std::vector<std::string> names{"dense", "switch", "gshard", "topk",         "xmoe",
                                              "thor",  "smoe",   "hash",   "expert_choice"};
  return names;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// Layers of one side with their stats name prefix.
std::string slot_name(bool is_decoder, int64_t index) {
  return std::string(is_decoder ? "decoder." : "encoder.") + std::to_string(index);
}

}  // namespace

// ---- options ---------------------------------------------------------------------------------

bool MoESlotOptions::is_moe_layer(int64_t index, bool is_decoder) const {
  if (!is_moe()) return false;
  if (placement == "encoder" && is_decoder) return false;
  if (placement == "decoder" && !is_decoder) return false;
  return (index + index_base) % every == 0;
}

std::string MoESlotOptions::resolved_aux_combine() const {
  if (aux_combine != "auto") return aux_combine;
  return variant == "smoe" ? "mean" : "sum";
}

void MoESlotOptions::validate(const std::string& owner) const {
  const auto& builtins = builtin_variants();
  const bool builtin = std::find(builtins.begin(), builtins.end(), variant) != builtins.end();
  if (!builtin) {
    const auto routers = known_routers();
    MOE_CHECK(std::find(routers.begin(), routers.end(), variant) != routers.end(), owner, ".variant='", variant,
              "' is neither a built-in variant (", join(builtins), ") nor a registered router (", join(routers), ")");
  }
  if (!is_moe()) return;
  MOE_CHECK(num_experts >= 1, owner, ".num_experts must be >= 1, got ", num_experts);
  MOE_CHECK(expert_hidden >= 0, owner, ".expert_hidden must be >= 0 (0 = the model's ffn_hidden), got ", expert_hidden);
  const bool uses_top_k =
      variant != "switch" && variant != "gshard" && variant != "xmoe" && variant != "thor" && variant != "smoe";
  MOE_CHECK(!uses_top_k || (top_k >= 1 && top_k <= num_experts), owner,
            ".top_k must be in [1, num_experts=", num_experts, "], got ", top_k);
  MOE_CHECK(every >= 1, owner, ".every must be >= 1, got ", every);
  MOE_CHECK(index_base == 0 || index_base == 1, owner, ".index_base must be 0 or 1, got ", index_base);
  MOE_CHECK(placement == "encoder" || placement == "decoder" || placement == "both", owner, ".placement must be ",
            "encoder, decoder or both, got '", placement, "'");
  MOE_CHECK(eval_token_fraction == -1 || (eval_token_fraction >= 0 && eval_token_fraction <= 1), owner,
            ".eval_token_fraction must be -1 (variant default) or in [0, 1], got ", eval_token_fraction);
  MOE_CHECK(aux_weight >= 0, owner, ".aux_weight must be >= 0, got ", aux_weight);
  MOE_CHECK(z_weight >= 0, owner, ".z_weight must be >= 0, got ", z_weight);
  MOE_CHECK(threshold > 0 && threshold <= 1, owner, ".threshold must be in (0, 1], got ", threshold);
  MOE_CHECK(thor_alpha >= 0, owner, ".thor_alpha must be >= 0, got ", thor_alpha);
  MOE_CHECK(thor_eval_granularity == "batch" || thor_eval_granularity == "token" ||
                thor_eval_granularity == "sequence" || thor_eval_granularity == "position",
            owner, ".thor_eval_granularity must be batch, token, sequence or position, got '", thor_eval_granularity,
            "'");
  MOE_CHECK(aux_combine == "auto" || aux_combine == "sum" || aux_combine == "mean", owner,
            ".aux_combine must be auto, sum or mean, got '", aux_combine, "'");
  if (variant == "smoe") {
    const auto strata_sizes = parse_strata(strata);
    int64_t sum = 0;
    for (auto s : strata_sizes) sum += s;
    MOE_CHECK(sum == num_experts, owner, ".strata='", strata, "' sums to ", sum, " but ", owner,
              ".num_experts=", num_experts);
  }
}

void TransformerOptions::validate(const std::string& owner) const {
  MOE_CHECK(vocab_size >= 2, owner, ".vocab_size must be >= 2, got ", vocab_size);
  MOE_CHECK(padding_idx >= 0 && padding_idx < vocab_size, owner, ".padding_idx must be in [0, vocab_size), got ",
            padding_idx);
  MOE_CHECK(d_model >= 4 && d_model % 2 == 0, owner, ".d_model must be even and >= 4, got ", d_model);
  MOE_CHECK(heads >= 1 && d_model % heads == 0, owner, ".heads must be >= 1 and divide ", owner, ".d_model=", d_model,
            ", got ", heads);
  MOE_CHECK(attention_dropout >= 0 && attention_dropout < 1, owner, ".attention_dropout must be in [0, 1), got ",
            attention_dropout);
  MOE_CHECK(encoder_layers >= 1, owner, ".encoder_layers must be >= 1, got ", encoder_layers);
  MOE_CHECK(decoder_layers >= 1, owner, ".decoder_layers must be >= 1, got ", decoder_layers);
  MOE_CHECK(ffn_hidden >= 1, owner, ".ffn_hidden must be >= 1, got ", ffn_hidden);
  parse_activation(activation);
  MOE_CHECK(dropout >= 0 && dropout < 1, owner, ".dropout must be in [0, 1), got ", dropout);
  MOE_CHECK(activation_dropout >= 0 && activation_dropout < 1, owner, ".activation_dropout must be in [0, 1), got ",
            activation_dropout);
  MOE_CHECK(max_positions >= 1, owner, ".max_positions must be >= 1, got ", max_positions);
  moe.validate(owner + ".moe");
}

// ---- FFN slots ---------------------------------------------------------------------------------

std::shared_ptr<FeedForwardBlockImpl> make_ffn_slot(const TransformerOptions& o, int64_t index, bool is_decoder) {
  const auto& m = o.moe;
  const auto activation = parse_activation(o.activation);
  if (!m.is_moe_layer(index, is_decoder)) {
    DenseFFNOptions dense;
    dense.ffn.d_model = o.d_model;
    dense.ffn.hidden = o.ffn_hidden;
    dense.ffn.activation = activation;
    dense.ffn.activation_dropout = o.activation_dropout;
    return std::make_shared<DenseFFNImpl>(dense);
  }
  const int64_t h = m.expert_hidden > 0 ? m.expert_hidden : o.ffn_hidden;
  if (m.variant == "smoe") {
    auto s = smoe_block_options(o.d_model, parse_strata(m.strata), h, o.dropout);
    s.input_layernorm = o.pre_norm;  // post-LN: the slot input is already normalised
    s.experts.ffn.activation = activation;
    s.experts.ffn.activation_dropout = o.activation_dropout;
    s.router_options.balance_loss_coef = m.aux_weight;
    s.router_options.z_loss_coef = m.z_weight;
    if (m.capacity_factor > 0) s.router_options.capacity.capacity_factor = m.capacity_factor;
    if (m.eval_token_fraction >= 0) s.router_options.capacity.eval_token_fraction = m.eval_token_fraction;
    if (m.deterministic_eval) s.router_options.sample_in_eval = false;
    s.expert_group = m.expert_group;
    return std::make_shared<StratifiedMoEBlockImpl>(s);
  }
  MoELayerOptions l;
  if (m.variant == "xmoe") {
    l = xmoe_layer_options(o.d_model, m.num_experts, h, /*lm_code=*/false);
    l.router_options.threshold = m.threshold;
  } else if (m.variant == "thor") {
    l = thor_layer_options(o.d_model, m.num_experts, h);
    l.router_options.eval_granularity = m.thor_eval_granularity;
  } else {
    const int64_t k = m.variant == "switch" ? 1 : m.variant == "gshard" ? 2 : m.top_k;
    l = MoELayerOptions(o.d_model, m.num_experts, h, k);
    l.router = (m.variant == "switch" || m.variant == "gshard") ? "topk" : m.variant;
    if (m.variant == "switch")
      l.router_options.capacity.capacity_factor = l.router_options.capacity.eval_capacity_factor = 1.25;
  }
  if (m.variant != "thor") {
    l.router_options.balance_loss_coef = m.aux_weight;
    l.router_options.z_loss_coef = m.z_weight;
    if (m.capacity_factor > 0)
      l.router_options.capacity.capacity_factor = l.router_options.capacity.eval_capacity_factor = m.capacity_factor;
    const double fraction = m.eval_token_fraction >= 0 ? m.eval_token_fraction : (m.variant == "xmoe" ? 0.0 : 1.0);
    l.router_options.capacity.eval_token_fraction = fraction;
  }
  l.experts.ffn.activation = activation;
  l.experts.ffn.activation_dropout = o.activation_dropout;
  l.expert_group = m.expert_group;
  return std::make_shared<MoELayerImpl>(l);
}

// ---- positions -----------------------------------------------------------------------------------

at::Tensor sinusoidal_positions(int64_t first, int64_t length, int64_t d_model) {
  MOE_CHECK(d_model >= 4 && d_model % 2 == 0, "sinusoidal_positions: d_model must be even and >= 4, got ", d_model);
  const int64_t half = d_model / 2;
  const double step = std::log(10000.0) / static_cast<double>(half - 1);
  auto freq = at::exp(at::arange(half, at::kDouble) * -step);              // [half]
  auto pos = at::arange(first, first + length, at::kDouble).unsqueeze(1);  // [L, 1]
  auto angles = pos * freq.unsqueeze(0);                                   // [L, half]
  return at::cat({at::sin(angles), at::cos(angles)}, 1).to(at::kFloat);
}

void DecoderState::select(const at::Tensor& index) {
  encoder.output = encoder.output.index_select(0, index);
  encoder.padding = encoder.padding.index_select(0, index);
  for (auto& c : self_attention) c.select(index);
  for (auto& c : cross_attention) c.select(index);
}

// ---- layers ------------------------------------------------------------------------------------

namespace {

torch::nn::LayerNorm layer_norm(int64_t d) { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-5)); }

// Runs the FFN slot with the pre-/post-LN residual wiring; SMoE's block returns the residual stream
// itself (exit LayerNorm included), so neither the residual nor the post-LN norm is applied.
at::Tensor ffn_sublayer(const std::shared_ptr<FeedForwardBlockImpl>& ffn, torch::nn::LayerNorm& norm,
                        const at::Tensor& x, const at::Tensor& token_ids, const TransformerOptions& o, bool training,
                        std::vector<LayerStats>* stats, const std::string& name, bool is_moe) {
  MoEOutput out;
  if (ffn->includes_residual()) {
    out = ffn->forward(x, token_ids);
  } else if (o.pre_norm) {
    out = ffn->forward(norm(x), token_ids);
    out.output = x + at::dropout(out.output, o.dropout, training);
  } else {
    out = ffn->forward(x, token_ids);
    out.output = norm(x + at::dropout(out.output, o.dropout, training));
  }
  if (is_moe && stats != nullptr) stats->push_back({name, std::move(out.stats)});
  return out.output;
}

at::Tensor attention_sublayer(MultiheadAttention& attn, torch::nn::LayerNorm& norm, const at::Tensor& x,
                              const at::Tensor& memory, const at::Tensor& key_padding, bool causal, KVCache* cache,
                              bool static_kv, const TransformerOptions& o, bool training) {
  if (o.pre_norm) {
    auto h = norm(x);
    auto y = attn(h, static_kv ? memory : h, key_padding, causal, cache, static_kv);
    return x + at::dropout(y, o.dropout, training);
  }
  auto y = attn(x, static_kv ? memory : x, key_padding, causal, cache, static_kv);
  return norm(x + at::dropout(y, o.dropout, training));
}

}  // namespace

TransformerEncoderLayerImpl::TransformerEncoderLayerImpl(const TransformerOptions& o, int64_t index_)
    : options(o), index(index_) {
  self_attn =
      register_module("self_attn", MultiheadAttention(AttentionOptions(o.d_model, o.heads, o.attention_dropout)));
  self_attn_norm = register_module("self_attn_norm", layer_norm(o.d_model));
  ffn_norm = register_module("ffn_norm", layer_norm(o.d_model));
  ffn = register_module("ffn", make_ffn_slot(o, index, /*is_decoder=*/false));
}

at::Tensor TransformerEncoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& padding,
                                                const at::Tensor& token_ids, std::vector<LayerStats>* stats) {
  auto h = attention_sublayer(self_attn, self_attn_norm, x, x, padding, false, nullptr, false, options, is_training());
  return ffn_sublayer(ffn, ffn_norm, h, token_ids, options, is_training(), stats, slot_name(false, index),
                      options.moe.is_moe_layer(index, false));
}

TransformerDecoderLayerImpl::TransformerDecoderLayerImpl(const TransformerOptions& o, int64_t index_)
    : options(o), index(index_) {
  self_attn =
      register_module("self_attn", MultiheadAttention(AttentionOptions(o.d_model, o.heads, o.attention_dropout)));
  cross_attn =
      register_module("cross_attn", MultiheadAttention(AttentionOptions(o.d_model, o.heads, o.attention_dropout)));
  self_attn_norm = register_module("self_attn_norm", layer_norm(o.d_model));
  cross_attn_norm = register_module("cross_attn_norm", layer_norm(o.d_model));
  ffn_norm = register_module("ffn_norm", layer_norm(o.d_model));
  ffn = register_module("ffn", make_ffn_slot(o, index, /*is_decoder=*/true));
}

at::Tensor TransformerDecoderLayerImpl::forward(const at::Tensor& x, const EncoderOutput& encoder,
                                                const at::Tensor& token_ids, std::vector<LayerStats>* stats,
                                                KVCache* self_cache, KVCache* cross_cache) {
  // Right-padded targets need no self-attention padding mask: the causal mask already keeps every
  // real position away from the padding after it.
  auto h = attention_sublayer(self_attn, self_attn_norm, x, x, at::Tensor(), true, self_cache, false, options,
                              is_training());
  h = attention_sublayer(cross_attn, cross_attn_norm, h, encoder.output, encoder.padding, false, cross_cache, true,
                         options, is_training());
  return ffn_sublayer(ffn, ffn_norm, h, token_ids, options, is_training(), stats, slot_name(true, index),
                      options.moe.is_moe_layer(index, true));
}

// ---- model ---------------------------------------------------------------------------------------

TransformerModelImpl::TransformerModelImpl(const TransformerOptions& o) : options(o) {
  options.validate();
  embed = register_module(
      "embed", torch::nn::Embedding(torch::nn::EmbeddingOptions(o.vocab_size, o.d_model).padding_idx(o.padding_idx)));
  {
    torch::NoGradGuard no_grad;
    embed->weight.normal_(0.0, std::pow(static_cast<double>(o.d_model), -0.5));
    embed->weight[o.padding_idx].zero_();
  }
  encoder_layers = register_module("encoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.encoder_layers; ++i) encoder_layers->push_back(TransformerEncoderLayer(o, i));
  decoder_layers = register_module("decoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.decoder_layers; ++i) decoder_layers->push_back(TransformerDecoderLayer(o, i));
  if (o.pre_norm) {
    encoder_norm = register_module("encoder_norm", layer_norm(o.d_model));
    decoder_norm = register_module("decoder_norm", layer_norm(o.d_model));
  }
}

at::Tensor TransformerModelImpl::embed_tokens(const at::Tensor& tokens, int64_t first_position) {
  MOE_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.scalar_type() == at::kLong,
            "TransformerModel: tokens must be [B, L] int64, got ",
            tokens.defined() ? tokens.sizes() : at::IntArrayRef{});
  const int64_t L = tokens.size(1);
  MOE_CHECK(first_position + L <= options.max_positions, "TransformerModel: sequence position ", first_position + L,
            " exceeds TransformerOptions.max_positions=", options.max_positions);
  auto x = embed(tokens);
  if (options.scale_embedding) x = x * std::sqrt(static_cast<double>(options.d_model));
  x = x + sinusoidal_positions(first_position, L, options.d_model).to(x.device(), x.scalar_type()).unsqueeze(0);
  return at::dropout(x, options.dropout, is_training());
}

at::Tensor TransformerModelImpl::output_logits(const at::Tensor& x) { return at::matmul(x, embed->weight.t()); }

EncoderOutput TransformerModelImpl::encode(const at::Tensor& source, std::vector<LayerStats>* stats) {
  EncoderOutput out;
  out.padding = source.eq(options.padding_idx);
  auto x = embed_tokens(source, 0);
  for (const auto& layer : *encoder_layers)
    x = layer->as<TransformerEncoderLayer>()->forward(x, out.padding, source, stats);
  out.output = options.pre_norm ? encoder_norm(x) : x;
  return out;
}

at::Tensor TransformerModelImpl::decode(const at::Tensor& target_input, const EncoderOutput& encoder,
                                        std::vector<LayerStats>* stats) {
  auto x = embed_tokens(target_input, 0);
  for (const auto& layer : *decoder_layers)
    x = layer->as<TransformerDecoderLayer>()->forward(x, encoder, target_input, stats);
  if (options.pre_norm) x = decoder_norm(x);
  return output_logits(x);
}

ModelOutput TransformerModelImpl::forward(const at::Tensor& source, const at::Tensor& target_input) {
  ModelOutput out;
  auto encoder = encode(source, &out.moe);
  out.logits = decode(target_input, encoder, &out.moe);
  out.aux_loss = combine_aux_losses(out.moe);
  return out;
}

DecoderState TransformerModelImpl::start_decoding(const EncoderOutput& encoder) const {
  DecoderState state;
  state.encoder = encoder;
  state.self_attention.resize(decoder_layers->size());
  state.cross_attention.resize(decoder_layers->size());
  return state;
}

at::Tensor TransformerModelImpl::decode_step(DecoderState& state, const at::Tensor& tokens,
                                             std::vector<LayerStats>* stats) {
  MOE_CHECK(tokens.defined() && tokens.dim() == 1 && tokens.size(0) == state.encoder.output.size(0),
            "TransformerModel::decode_step: tokens must be [N] with N=", state.encoder.output.size(0), " hypotheses");
  auto ids = tokens.view({-1, 1});
  auto x = embed_tokens(ids, state.step);
  size_t i = 0;
  for (const auto& layer : *decoder_layers) {
    x = layer->as<TransformerDecoderLayer>()->forward(x, state.encoder, ids, stats, &state.self_attention[i],
                                                      &state.cross_attention[i]);
    ++i;
  }
  if (options.pre_norm) x = decoder_norm(x);
  state.step += 1;
  return at::log_softmax(output_logits(x).squeeze(1), -1, at::kFloat);
}

at::Tensor TransformerModelImpl::combine_aux_losses(const std::vector<LayerStats>& stats) const {
  at::Tensor total;
  int64_t n = 0;
  for (const auto& s : stats) {
    auto term = s.stats.total_aux_loss();
    total = total.defined() ? total + term : term;
    ++n;
  }
  if (!total.defined()) return at::zeros({}, embed->weight.options().dtype(at::kFloat));
  return options.moe.resolved_aux_combine() == "mean" ? total / static_cast<double>(n) : total;
}

std::vector<std::string> TransformerModelImpl::moe_layer_names() const {
  std::vector<std::string> names;
  for (int64_t i = 0; i < options.encoder_layers; ++i)
    if (options.moe.is_moe_layer(i, false)) names.push_back(slot_name(false, i));
  for (int64_t i = 0; i < options.decoder_layers; ++i)
    if (options.moe.is_moe_layer(i, true)) names.push_back(slot_name(true, i));
  return names;
}

ParameterCount TransformerModelImpl::count_parameters(const std::map<std::string, double>& experts_per_token) const {
  ParameterCount c;
  for (const auto& p : parameters()) c.total += p.numel();
  c.embedding = embed->weight.numel();
  const auto& m = options.moe;
  const double nominal = m.variant == "switch" || m.variant == "thor"   ? 1.0
                         : m.variant == "gshard"                        ? 2.0
                         : (m.variant == "smoe" || m.variant == "xmoe") ? -1.0
                                                                        : static_cast<double>(m.top_k);
  double active = static_cast<double>(c.total);
  auto account = [&](const torch::nn::Module& slot, const std::string& name) {
    int64_t expert_params = 0, num_experts = 0, held = 0;
    for (const auto& item : slot.named_parameters(/*recurse=*/true)) {
      if (item.key().rfind("experts.", 0) == 0) expert_params += item.value().numel();
    }
    if (const auto* l = dynamic_cast<const MoELayerImpl*>(&slot)) {
      num_experts = l->options.num_experts;
      held = l->experts->options.num_local_experts;
    }
    if (const auto* b = dynamic_cast<const StratifiedMoEBlockImpl*>(&slot)) {
      num_experts = b->options.num_experts();
      held = b->experts->options.num_local_experts;
    }
    if (num_experts == 0) return;
    // Under expert parallelism this process holds `held` of the layer's experts; count the layer.
    const double per_expert = static_cast<double>(expert_params) / static_cast<double>(held);
    const auto elsewhere = static_cast<int64_t>(std::llround(per_expert * static_cast<double>(num_experts - held)));
    c.total += elsewhere;
    c.expert += expert_params + elsewhere;
    active += static_cast<double>(elsewhere);
    auto it = experts_per_token.find(name);
    double k = it != experts_per_token.end() ? it->second : nominal;
    if (k < 0) k = 2.0;  // unmeasured SMoE/XMoE: counted as top-2 (document it by passing measurements)
    active -= static_cast<double>(expert_params + elsewhere) - k * per_expert;
  };
  for (const auto& layer : *encoder_layers) {
    auto l = layer->as<TransformerEncoderLayer>();
    account(*l->ffn, slot_name(false, l->index));
  }
  for (const auto& layer : *decoder_layers) {
    auto l = layer->as<TransformerDecoderLayer>();
    account(*l->ffn, slot_name(true, l->index));
  }
  c.active = active;
  // FLOPs: 2 per active matmul parameter. The embedding counts once, as the output projection (the
  // input lookup is not a matmul); rank-1 parameters (biases, norms) are left out in full, which
  // undercounts by far less than 1% (expert biases are only k/E active anyway). Attention-score
  // FLOPs (which grow with the sequence length) are not included.
  double non_matmul = 0;
  for (const auto& p : parameters())
    if (p.dim() == 1) non_matmul += static_cast<double>(p.numel());
  c.forward_flops_per_token = 2.0 * (active - non_matmul);
  return c;
}

}  // namespace moe
