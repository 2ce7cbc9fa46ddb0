// Multi-head attention with masks and a key/value cache (see moe/layers/attention.h).
#include "moe/layers/attention.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>

#include "moe/core/error.h"

namespace moe {

void AttentionOptions::validate(const std::string& owner) const {
  MOE_CHECK(d_model >= 1, owner, ".d_model must be >= 1, got ", d_model);
  MOE_CHECK(heads >= 1, owner, ".heads must be >= 1, got ", heads);
  MOE_CHECK(d_model % heads == 0, owner, ".d_model=", d_model, " must be divisible by ", owner, ".heads=", heads);
  MOE_CHECK(dropout >= 0 && dropout < 1, owner, ".dropout must be in [0, 1), got ", dropout);
}

void KVCache::select(const at::Tensor& index) {
  if (key.defined()) key = key.index_select(0, index);
  if (value.defined()) value = value.index_select(0, index);
}

MultiheadAttentionImpl::MultiheadAttentionImpl(const AttentionOptions& opts) : options(opts) {
  options.validate();
  const auto d = options.d_model;
  auto linear = [&](const char* name) {
    return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(d, d).bias(options.bias)));
  };
  q_proj = linear("q_proj");
  k_proj = linear("k_proj");
  v_proj = linear("v_proj");
  out_proj = linear("out_proj");
  // fairseq's initialisation: Xavier-uniform with gain 1/sqrt(2) for the input projections, plain
  // Xavier-uniform for the output projection, zero biases.
  torch::NoGradGuard no_grad;
  for (auto* lin : {&q_proj, &k_proj, &v_proj}) torch::nn::init::xavier_uniform_((*lin)->weight, 1.0 / std::sqrt(2.0));
  torch::nn::init::xavier_uniform_(out_proj->weight);
  if (options.bias)
    for (auto* lin : {&q_proj, &k_proj, &v_proj, &out_proj}) (*lin)->bias.zero_();
}

at::Tensor MultiheadAttentionImpl::forward(const at::Tensor& query, const at::Tensor& memory,
                                           const at::Tensor& key_padding, bool causal, KVCache* cache, bool static_kv) {
  MOE_CHECK(query.defined() && query.dim() == 3 && query.size(2) == options.d_model,
            "MultiheadAttention: query must be [N, Tq, ", options.d_model, "], got ",
            query.defined() ? query.sizes() : at::IntArrayRef{});
  const int64_t N = query.size(0), Tq = query.size(1), H = options.heads, dh = options.d_model / H;
  auto split_heads = [&](const at::Tensor& t) { return t.view({N, t.size(1), H, dh}).transpose(1, 2); };

  at::Tensor k, v;
  const int64_t past = (cache != nullptr && !static_kv) ? cache->length() : 0;
  if (static_kv && cache != nullptr && cache->key.defined()) {
    k = cache->key;
    v = cache->value;
  } else {
    MOE_CHECK(memory.defined() && memory.dim() == 3 && memory.size(0) == N && memory.size(2) == options.d_model,
              "MultiheadAttention: memory must be [", N, ", Tk, ", options.d_model, "], got ",
              memory.defined() ? memory.sizes() : at::IntArrayRef{});
    k = split_heads(k_proj(memory));
    v = split_heads(v_proj(memory));
    if (cache != nullptr) {
      if (!static_kv && cache->key.defined()) {
        k = at::cat({cache->key, k}, 2);
        v = at::cat({cache->value, v}, 2);
      }
      cache->key = k;
      cache->value = v;
    }
  }
  const int64_t Tk = k.size(2);
  auto q = split_heads(q_proj(query));
  // LibTorch's scaled_dot_product_attention: flash / memory-efficient kernels on CUDA (sm_80+) and a
  // flash kernel on the CPU, softmax accumulated in fp32 for bf16/fp16 inputs (fp64 for fp64).
  // `allowed` is true where a query may attend to a key; undefined = everywhere.
  at::Tensor allowed;
  if (key_padding.defined()) {
    MOE_CHECK(key_padding.dim() == 2 && key_padding.size(0) == N && key_padding.size(1) == Tk &&
                  key_padding.scalar_type() == at::kBool,
              "MultiheadAttention: key_padding must be [", N, ", ", Tk, "] bool, got ", key_padding.sizes(), " ",
              key_padding.scalar_type());
    allowed = key_padding.logical_not().view({N, 1, 1, Tk});
  }
  // Without a cache or padding, the kernels' own causal mask (query i sees keys 0..i) is the rule.
  const bool kernel_causal = causal && past == 0 && Tq == Tk && !allowed.defined();
  if (causal && !kernel_causal) {
    // Query i sits at absolute position past + i and may see keys 0 .. past + i.
    auto qpos = at::arange(past, past + Tq, query.options().dtype(at::kLong)).view({Tq, 1});
    auto kpos = at::arange(Tk, query.options().dtype(at::kLong)).view({1, Tk});
    auto visible = kpos.le(qpos).view({1, 1, Tq, Tk});
    allowed = allowed.defined() ? allowed.logical_and(visible) : visible;
  }
  const double dropout = options.dropout > 0 && is_training() ? options.dropout : 0.0;
  auto out = at::scaled_dot_product_attention(
                 q, k, v, allowed.defined() ? std::optional<at::Tensor>(allowed) : std::optional<at::Tensor>(), dropout,
                 kernel_causal, 1.0 / std::sqrt(static_cast<double>(dh)))
                 .transpose(1, 2)
                 .reshape({N, Tq, options.d_model});
  return out_proj(out);
}

}  // namespace moe
