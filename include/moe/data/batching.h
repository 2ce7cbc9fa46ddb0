// Examples and batches for multilingual translation. Examples carry the target-language tag on the
// source side (Johnson et al. 2017: "<2de> source ... </s>"). The TokenBatcher yields an endless
// stream of token-budgeted, length-bucketed batches, choosing the direction of each batch with
// temperature sampling p_d ∝ (n_d / N)^(1/T) (Arivazhagan et al. 2019; T = 1 proportional, T → ∞
// uniform). Its state (step, and each direction's epoch and cursor) reproduces the stream exactly,
// so a resumed run sees the same batches.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "moe/data/corpus.h"
#include "moe/data/tokenizer.h"

namespace moe {

struct Example {
  std::vector<int64_t> source;  ///< [tag] + pieces + [eos]
  std::vector<int64_t> target;  ///< pieces + [eos]
  int64_t direction = 0;
  int64_t index = 0;  ///< position in its ParallelText
};

/// Encodes every pair of `text`; pairs whose source or target exceeds max_length ids are skipped.
/// tag: the target-language tag piece (e.g. "<2de>"), looked up in the tokenizer.
std::vector<Example> encode_examples(const ParallelText& text, const SentencePieceTokenizer& tokenizer,
                                     const std::string& tag, int64_t direction, int64_t max_length = 256);

struct Batch {
  at::Tensor source;          ///< [B, S] int64, padded with SentencePieceTokenizer::kPad
  at::Tensor target_input;    ///< [B, T] int64: bos, target[:-1]
  at::Tensor target_output;   ///< [B, T] int64: target (ends with eos)
  at::Tensor source_padding;  ///< [B, S] bool, true at padding
  at::Tensor target_padding;  ///< [B, T] bool, true at padding
  at::Tensor direction;       ///< [B] int64
  at::Tensor index;           ///< [B] int64, Example::index
  int64_t num_target_tokens = 0;
};

/// Pads `examples` into a Batch (CPU tensors).
Batch collate(const std::vector<const Example*>& examples);

struct BatcherOptions {
  int64_t max_tokens = 4096;    ///< B × padded length at most (a longer single example gets its own batch)
  double temperature = 1.0;     ///< direction sampling temperature (>= 1 flattens towards uniform); > 0
  int64_t bucket_chunk = 2048;  ///< examples sorted by length within shuffled chunks of this size
  uint64_t seed = 1;
  void validate() const;
};

class TokenBatcher {
 public:
  struct State {
    uint64_t step = 0;
    std::vector<int64_t> epoch, cursor;  ///< per direction
  };

  /// per_direction[d]: the examples of direction d (non-empty).
  TokenBatcher(std::vector<std::vector<Example>> per_direction, BatcherOptions options);

  Batch next();
  const std::vector<double>& direction_probabilities() const { return probabilities_; }
  State state() const { return state_; }
  /// Continues exactly where `state` was taken (same examples and options).
  void restore(const State& state);

 private:
  void build_epoch(size_t direction);
  std::vector<std::vector<Example>> examples_;
  BatcherOptions options_;
  std::vector<double> probabilities_;
  State state_;
  std::vector<std::vector<std::vector<int64_t>>> batches_;  ///< per direction: the current epoch's batches
};

/// A batcher state as one int64 tensor [2 + 2·D]: step, D, epoch[D], cursor[D] (for checkpoints).
at::Tensor batcher_state_to_tensor(const TokenBatcher::State& state);
/// The inverse; throws moe::Error naming `source` when the tensor is malformed.
TokenBatcher::State batcher_state_from_tensor(const at::Tensor& tensor, const std::string& source);

/// In-order batches of one direction for evaluation (no shuffling, token budget respected).
std::vector<Batch> make_eval_batches(const std::vector<Example>& examples, int64_t max_tokens);

}  // namespace moe
