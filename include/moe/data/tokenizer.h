// SentencePiece subword tokenizer (Kudo & Richardson 2018) over Debian's libsentencepiece: a joint
// unigram model trained in-process on the training text of every language, with language tags such
// as <2de> as user-defined symbols (each one piece) and byte fallback (no unknown characters),
// cached by a hash of the input files' contents and the options so a second run reuses the model.
// Round trips are lossless for text that the chosen normalisation leaves alone (identity: all text).
// Special ids: pad 0, unk 1, bos 2, eos 3.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace moe {

struct SentencePieceOptions {
  int vocab_size = 8000;
  std::string model_type = "unigram";   ///< unigram | bpe
  std::vector<std::string> user_symbols;  ///< e.g. language tags {"<2de>", "<2fr>"}
  bool byte_fallback = true;
  double character_coverage = 1.0;
  int64_t input_sentence_size = 1000000;  ///< sentences sampled for training at most
  int num_threads = 2;
  /// SentencePiece normalisation: nmt_nfkc (the NMT default; maps e.g. "…" to "...", full-width
  /// punctuation to ASCII) or identity (lossless for every character).
  std::string normalization = "nmt_nfkc";
  uint64_t seed = 1;  ///< input-sampling seed (corpora above input_sentence_size)
  void validate() const;
  /// The options as SentencePiece trainer flags (without input and model prefix).
  std::string trainer_flags() const;
};

class SentencePieceTokenizer {
 public:
  static constexpr int kPad = 0, kUnk = 1, kBos = 2, kEos = 3;

  /// Loads <cache_dir>/spm-<hash>.model when it exists, else trains on `text_files` (one sentence
  /// per line) and writes it there atomically. `trained` (optional) tells which happened.
  static SentencePieceTokenizer train_or_load(const std::vector<std::string>& text_files, const std::string& cache_dir,
                                              const SentencePieceOptions& options, bool* trained = nullptr);
  /// Loads a model file; throws moe::Error naming the file on failure.
  static SentencePieceTokenizer load(const std::string& model_path);
  /// Loads from the serialized model bytes (as stored in checkpoints).
  static SentencePieceTokenizer from_serialized(const std::string& bytes);

  std::vector<int> encode(const std::string& text) const;
  std::vector<std::string> encode_pieces(const std::string& text) const;
  std::string decode(const std::vector<int>& ids) const;
  /// Id of a piece (e.g. a language tag); throws moe::Error when the piece is not in the vocabulary.
  int piece_id(const std::string& piece) const;
  int vocab_size() const;
  const std::string& model_path() const { return model_path_; }
  /// The model's bytes, for checkpoints.
  std::string serialized() const;

 private:
  std::shared_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::string model_path_;
};

}  // namespace moe
