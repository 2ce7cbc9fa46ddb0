// Batched beam search and greedy decoding over any incremental decoder (fairseq's SequenceGenerator
// semantics): each step extends every live hypothesis, keeps the best 2·beam candidates per
// sentence, moves candidates ending in EOS to the finished list with score / length^lenpen, and
// continues with the best `beam` others; a sentence is done when it has `beam` finished hypotheses
// or reaches its maximum length, min(a·source_length + b, max_len_cap) tokens before the EOS (which
// is then forced). An EOS candidate finishes a hypothesis only when it ranks within the top `beam`.
// Finished sentences are dropped from the batch. beam = 1 is greedy decoding.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace moe {

/// What beam search needs from a model.
class IncrementalDecoder {
 public:
  virtual ~IncrementalDecoder() = default;
  /// tokens [N] int64, the last token of each live hypothesis -> log-probabilities [N, V] (fp32).
  virtual at::Tensor step(const at::Tensor& tokens) = 0;
  /// Keeps hypotheses `index` ([N'] int64, rows of the previous step) in this order.
  virtual void select(const at::Tensor& index) = 0;
};

struct BeamSearchOptions {
  static constexpr int64_t kMaxBeam = 64;  ///< beam sizes above this are refused (memory grows with it)
  int64_t beam = 5;                        ///< in [1, kMaxBeam]; 1 = greedy
  double lenpen = 1.0;                     ///< score / length^lenpen (length counts EOS)
  double max_len_a = 1.2;                  ///< at most a·source_length + b tokens before the EOS
  int64_t max_len_b = 10;
  int64_t max_len_cap = -1;  ///< an upper bound on that (the model's positions); -1 = none
  int64_t min_len = 1;       ///< at least this many tokens before the EOS (1: never empty, as fairseq)
  int64_t bos = 2, eos = 3, pad = 0, unk = -1;  ///< token ids; unk >= 0 is never generated
  void validate() const;
};

struct Hypothesis {
  std::vector<int64_t> tokens;  ///< without BOS and EOS
  double score = 0;             ///< sum of log-probabilities / length^lenpen
};

/// Decodes B sentences whose decoder state holds B·beam hypotheses (sentence i's beams are rows
/// i·beam .. i·beam + beam − 1). source_lengths: tokens in each source sentence. Returns the best
/// hypothesis of each sentence.
std::vector<Hypothesis> beam_search(IncrementalDecoder& decoder, const std::vector<int64_t>& source_lengths,
                                    const BeamSearchOptions& options);

}  // namespace moe
