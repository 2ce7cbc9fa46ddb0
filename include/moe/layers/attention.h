// Multi-head scaled dot-product attention (Vaswani et al. 2017, "Attention Is All You Need") with
// key-padding and causal masks and a key/value cache for incremental decoding. Self-attention
// appends each step's keys and values to the cache; cross-attention ("static" keys) projects the
// encoder output once and reuses it.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <string>

namespace moe {

struct AttentionOptions {
  AttentionOptions() = default;
  AttentionOptions(int64_t d_model, int64_t heads, double dropout = 0.0)
      : d_model(d_model), heads(heads), dropout(dropout) {}
  int64_t d_model = 0;   ///< d; must be divisible by heads
  int64_t heads = 0;     ///< H >= 1
  double dropout = 0.0;  ///< dropout on the attention probabilities, in [0, 1)
  bool bias = true;      ///< biases on the four projections
  void validate(const std::string& owner = "AttentionOptions") const;
};

/// Cached keys and values of one attention module, [N, H, t, d/H] each (undefined = empty).
struct KVCache {
  at::Tensor key, value;
  int64_t length() const { return key.defined() ? key.size(2) : 0; }
  /// Keeps the rows `index` ([N'] int64) of every cached tensor (beam reordering, finished sentences).
  void select(const at::Tensor& index);
};

class MultiheadAttentionImpl : public torch::nn::Module {
 public:
  explicit MultiheadAttentionImpl(const AttentionOptions& options);

  /// query:  [N, Tq, d] floating.
  /// memory: [N, Tk, d], the keys' and values' source (the query itself for self-attention).
  /// key_padding: optional [N, Tk_total] bool, true where the key is padding (Tk_total counts cached
  ///   keys too).
  /// causal: query i (at absolute position cache.length() + i) sees keys at positions <= its own.
  /// cache: optional. Self-attention (static_kv false) appends this call's keys and values and
  ///   attends over all of them; cross-attention (static_kv true) projects `memory` on the first
  ///   call and reuses the cached projection afterwards (memory may then be undefined).
  /// Returns [N, Tq, d].
  at::Tensor forward(const at::Tensor& query, const at::Tensor& memory, const at::Tensor& key_padding = {},
                     bool causal = false, KVCache* cache = nullptr, bool static_kv = false);

  AttentionOptions options;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
};
TORCH_MODULE(MultiheadAttention);

}  // namespace moe
