// Translating text with a TransformerModel: SentencePiece encoding with the target-language tag,
// length-sorted batches, batched beam search (moe/eval/beam_search.h) over the model's key/value
// cache, and detokenisation. Output order is the input order.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>
#include <vector>

#include "moe/data/tokenizer.h"
#include "moe/eval/beam_search.h"
#include "moe/models/transformer.h"

namespace moe {

/// IncrementalDecoder over a TransformerModel's DecoderState (the state holds N hypotheses).
class TransformerBeamDecoder : public IncrementalDecoder {
 public:
  TransformerBeamDecoder(TransformerModel model, DecoderState state)
      : model_(std::move(model)), state_(std::move(state)) {}
  at::Tensor step(const at::Tensor& tokens) override;
  void select(const at::Tensor& index) override;

 private:
  TransformerModel model_;
  DecoderState state_;
};

struct TranslateOptions {
  BeamSearchOptions search;
  int64_t max_tokens = 4096;  ///< source tokens per batch (beam · this many decoder rows)
  int64_t max_length = 256;   ///< source tokens per sentence (tag and EOS included); longer are truncated
};

/// Token ids of one batch: source [B, S] int64 padded with 0 -> best hypothesis per row.
std::vector<Hypothesis> translate_batch(TransformerModel& model, const at::Tensor& source,
                                        const TranslateOptions& options);

/// Translates `sentences` into the language of `target_tag` (e.g. "<2de>"). The model is put in
/// evaluation mode; runs on the model's device.
std::vector<std::string> translate(TransformerModel& model, const SentencePieceTokenizer& tokenizer,
                                   const std::string& target_tag, const std::vector<std::string>& sentences,
                                   const TranslateOptions& options);

}  // namespace moe
