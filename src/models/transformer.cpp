// The encoder-decoder Transformer with FFN slots (see moe/models/transformer.h).
#include "moe/models/transformer.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>

#include "moe/core/error.h"
#include "moe/layers/stratified_moe_block.h"

namespace moe {
namespace {

// Layers of one side with their stats name prefix.
std::string slot_name(bool is_decoder, int64_t index) {
  return std::string(is_decoder ? "decoder." : "encoder.") + std::to_string(index);
}

// k of a fixed-k variant, else the user's top_k (or the router default).
int64_t slot_top_k(const VariantSpec& spec, const RouterSettings& settings) {
  if (spec.fixed_top_k > 0) return spec.fixed_top_k;
  RouterOptions defaults;
  settings.apply(defaults);
  return defaults.top_k;
}

}  // namespace

// ---- options ---------------------------------------------------------------------------------

bool MoESlotOptions::is_moe() const { return variant_spec(variant).kind != SlotKind::kDense; }

bool MoESlotOptions::is_moe_layer(int64_t index, bool is_decoder) const {
  if (!is_moe()) return false;
  if (placement == "encoder" && is_decoder) return false;
  if (placement == "decoder" && !is_decoder) return false;
  return (index + index_base) % every == 0;
}

AuxCombine MoESlotOptions::resolved_aux_combine() const {
  return aux_combine == "auto" ? variant_spec(variant).aux_combine : parse_aux_combine(aux_combine);
}

RouterOptions MoESlotOptions::resolved_router_options(int64_t d_model) const {
  const auto spec = variant_spec(variant);
  RouterOptions r;
  if (spec.kind == SlotKind::kMoELayer)
    r = spec.layer(d_model, num_experts, 1, slot_top_k(spec, router)).router_options;
  if (spec.kind == SlotKind::kStratified) r = spec.block(d_model, {num_experts}, 1, 0.0).router_options;
  r.d_model = d_model;
  r.num_experts = num_experts;
  router.apply(r);
  return r;
}

void MoESlotOptions::validate(const std::string& owner, const std::string& router_owner_in) const {
  const auto router_owner = router_owner_in.empty() ? owner + ".router" : router_owner_in;
  const auto spec = variant_spec(variant, owner + ".variant");
  if (spec.kind == SlotKind::kDense) return;
  MOE_CHECK(num_experts >= 1 && num_experts <= 4096, owner, ".num_experts must be in [1, 4096], got ", num_experts);
  MOE_CHECK(expert_hidden >= 0 && expert_hidden <= (1 << 20), owner,
            ".expert_hidden must be in [0, 1048576] (0 = the model's ffn_hidden), got ", expert_hidden);
  MOE_CHECK(every >= 1 && every <= 256, owner, ".every must be in [1, 256], got ", every);
  MOE_CHECK(index_base == 0 || index_base == 1, owner, ".index_base must be 0 or 1, got ", index_base);
  MOE_CHECK(placement == "encoder" || placement == "decoder" || placement == "both", owner, ".placement must be ",
            "encoder, decoder or both, got '", printable(placement), "'");
  MOE_CHECK(std::isfinite(thor_alpha) && thor_alpha >= 0, owner, ".thor_alpha must be >= 0, got ", thor_alpha);
  MOE_CHECK(aux_combine == "auto" || aux_combine == "sum" || aux_combine == "mean", owner,
            ".aux_combine must be auto, sum or mean, got '", printable(aux_combine), "'");
  if (spec.kind == SlotKind::kStratified) {
    const auto strata_sizes = parse_strata(strata);
    int64_t sum = 0;
    for (auto s : strata_sizes) sum += s;
    MOE_CHECK(sum == num_experts, owner, ".strata='", strata, "' sums to ", sum, " but ", owner,
              ".num_experts=", num_experts);
  }
  if (spec.fixed_top_k > 0 && router.has("top_k")) {
    MOE_CHECK(router.get("top_k") == std::to_string(spec.fixed_top_k), router_owner, ".top_k = ", router.get("top_k"),
              " does not apply to variant '", variant, "', which uses k = ", spec.fixed_top_k,
              " (variant topk takes any k)");
  }
  resolved_router_options(/*d_model=*/1).validate(router_owner, /*config_keys=*/true);
}

void TransformerOptions::validate(const std::string& owner, const std::string& moe_owner,
                                  const std::string& router_owner) const {
  MOE_CHECK(vocab_size >= 2 && vocab_size <= (1 << 24), owner, ".vocab_size must be in [2, 16777216], got ",
            vocab_size);
  MOE_CHECK(padding_idx >= 0 && padding_idx < vocab_size, owner, ".padding_idx must be in [0, vocab_size), got ",
            padding_idx);
  MOE_CHECK(d_model >= 4 && d_model % 2 == 0, owner, ".d_model must be even and >= 4, got ", d_model);
  MOE_CHECK(d_model <= 65536, owner, ".d_model must be <= 65536, got ", d_model);
  MOE_CHECK(heads >= 1 && d_model % heads == 0, owner, ".heads must be >= 1 and divide ", owner, ".d_model=", d_model,
            ", got ", heads);
  MOE_CHECK(encoder_layers >= 1 && encoder_layers <= 256, owner, ".encoder_layers must be in [1, 256], got ",
            encoder_layers);
  MOE_CHECK(decoder_layers >= 1 && decoder_layers <= 256, owner, ".decoder_layers must be in [1, 256], got ",
            decoder_layers);
  MOE_CHECK(ffn_hidden >= 1 && ffn_hidden <= (1 << 20), owner, ".ffn_hidden must be in [1, 1048576], got ", ffn_hidden);
  parse_activation(activation);
  for (auto [name, p] : {std::pair<const char*, double>{".dropout", dropout},
                         {".attention_dropout", attention_dropout},
                         {".activation_dropout", activation_dropout}})
    MOE_CHECK(p >= 0 && p < 1, owner, name, " must be in [0, 1), got ", p);
  MOE_CHECK(max_positions >= 1 && max_positions <= (1 << 20), owner, ".max_positions must be in [1, 1048576], got ",
            max_positions);
  const auto slot_owner = moe_owner.empty() ? owner + ".moe" : moe_owner;
  moe.validate(slot_owner, router_owner.empty() ? slot_owner + ".router" : router_owner);
}

// ---- FFN slots ---------------------------------------------------------------------------------

std::shared_ptr<FeedForwardBlockImpl> make_ffn_slot(const TransformerOptions& o, int64_t index, bool is_decoder,
                                                    const std::shared_ptr<Communicator>& expert_group) {
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
  const auto spec = variant_spec(m.variant);
  const int64_t h = m.expert_hidden > 0 ? m.expert_hidden : o.ffn_hidden;
  if (spec.kind == SlotKind::kStratified) {
    auto s = spec.block(o.d_model, parse_strata(m.strata), h, o.dropout);
    s.input_layernorm = o.pre_norm;  // post-LN: the slot input is already normalised
    s.experts.ffn.activation = activation;
    s.experts.ffn.activation_dropout = o.activation_dropout;
    m.router.apply(s.router_options);
    s.expert_group = expert_group;
    return std::make_shared<StratifiedMoEBlockImpl>(s);
  }
  auto l = spec.layer(o.d_model, m.num_experts, h, slot_top_k(spec, m.router));
  l.experts.ffn.activation = activation;
  l.experts.ffn.activation_dropout = o.activation_dropout;
  m.router.apply(l.router_options);
  l.expert_group = expert_group;
  return spec.make_block ? spec.make_block(l) : std::make_shared<MoELayerImpl>(l);
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
  const auto padding = token_ids.eq(o.padding_idx);  // the FFN slot knows which positions are padding
  if (ffn->includes_residual()) {
    out = ffn->forward(x, token_ids, padding);
  } else if (o.pre_norm) {
    out = ffn->forward(norm(x), token_ids, padding);
    out.output = x + at::dropout(out.output, o.dropout, training);
  } else {
    out = ffn->forward(x, token_ids, padding);
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

TransformerEncoderLayerImpl::TransformerEncoderLayerImpl(const TransformerOptions& o, int64_t index_,
                                                         const std::shared_ptr<Communicator>& expert_group)
    : options(o), index(index_) {
  self_attn =
      register_module("self_attn", MultiheadAttention(AttentionOptions(o.d_model, o.heads, o.attention_dropout)));
  self_attn_norm = register_module("self_attn_norm", layer_norm(o.d_model));
  ffn_norm = register_module("ffn_norm", layer_norm(o.d_model));
  ffn = register_module("ffn", make_ffn_slot(o, index, /*is_decoder=*/false, expert_group));
}

at::Tensor TransformerEncoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& padding,
                                                const at::Tensor& token_ids, std::vector<LayerStats>* stats) {
  auto h = attention_sublayer(self_attn, self_attn_norm, x, x, padding, false, nullptr, false, options, is_training());
  return ffn_sublayer(ffn, ffn_norm, h, token_ids, options, is_training(), stats, slot_name(false, index),
                      options.moe.is_moe_layer(index, false));
}

TransformerDecoderLayerImpl::TransformerDecoderLayerImpl(const TransformerOptions& o, int64_t index_,
                                                         const std::shared_ptr<Communicator>& expert_group)
    : options(o), index(index_) {
  self_attn =
      register_module("self_attn", MultiheadAttention(AttentionOptions(o.d_model, o.heads, o.attention_dropout)));
  cross_attn =
      register_module("cross_attn", MultiheadAttention(AttentionOptions(o.d_model, o.heads, o.attention_dropout)));
  self_attn_norm = register_module("self_attn_norm", layer_norm(o.d_model));
  cross_attn_norm = register_module("cross_attn_norm", layer_norm(o.d_model));
  ffn_norm = register_module("ffn_norm", layer_norm(o.d_model));
  ffn = register_module("ffn", make_ffn_slot(o, index, /*is_decoder=*/true, expert_group));
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

TransformerModelImpl::TransformerModelImpl(const TransformerOptions& o,
                                           const std::shared_ptr<Communicator>& expert_group)
    : options(o) {
  options.validate();
  embed = register_module(
      "embed", torch::nn::Embedding(torch::nn::EmbeddingOptions(o.vocab_size, o.d_model).padding_idx(o.padding_idx)));
  {
    torch::NoGradGuard no_grad;
    embed->weight.normal_(0.0, std::pow(static_cast<double>(o.d_model), -0.5));
    embed->weight[o.padding_idx].zero_();
  }
  encoder_layers = register_module("encoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.encoder_layers; ++i) encoder_layers->push_back(TransformerEncoderLayer(o, i, expert_group));
  decoder_layers = register_module("decoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.decoder_layers; ++i) decoder_layers->push_back(TransformerDecoderLayer(o, i, expert_group));
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
  if (!positions_.defined() || positions_.device() != x.device() || positions_.scalar_type() != x.scalar_type())
    positions_ = sinusoidal_positions(0, options.max_positions, options.d_model).to(x.device(), x.scalar_type());
  x = x + positions_.narrow(0, first_position, L).unsqueeze(0);
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
  return options.moe.resolved_aux_combine() == AuxCombine::kMean ? total / static_cast<double>(n) : total;
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
  const auto spec = variant_spec(options.moe.variant);
  const double nominal = spec.nominal_experts_per_token != 0
                             ? spec.nominal_experts_per_token
                             : static_cast<double>(slot_top_k(spec, options.moe.router));
  double active = static_cast<double>(c.total);
  double active_expert_matmul = 0;  // matmul parameters of the experts a token uses, over every MoE slot
  auto account = [&](const FeedForwardBlockImpl& slot, const std::string& name) {
    const auto* bank = slot.expert_bank();
    if (bank == nullptr) return;  // a dense slot
    int64_t expert_params = 0, expert_matmul = 0;
    for (const auto& item : slot.named_parameters(/*recurse=*/true)) {
      if (item.key().rfind("experts.", 0) != 0) continue;
      expert_params += item.value().numel();
      if (item.value().dim() >= 2) expert_matmul += item.value().numel();
    }
    const int64_t num_experts = bank->options.num_experts, held = bank->options.local_count();
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
    active_expert_matmul += k * static_cast<double>(expert_matmul) / static_cast<double>(held);
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
  c.expert_flops_per_token = 2.0 * active_expert_matmul;
  return c;
}

}  // namespace moe
