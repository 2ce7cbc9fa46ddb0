// The translation data pipeline behind one entry point: the corpus (the default gettext corpus,
// built once and cached, or a folder corpus), the joint SentencePiece model with the target-language
// tags (trained once and cached), and each direction's encoded training and validation examples and
// raw evaluation text. The trainer batches them (TokenBatcher); evaluation decodes the raw text.
//
//   DataConfig data;  TokenizerConfig tokenizer;        // [data] and [tokenizer] of a run's config
//   auto d = build_translation_data(data, tokenizer);   // d.train[i], d.valid[i]: direction i
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "moe/data/batching.h"
#include "moe/data/corpus.h"
#include "moe/data/tokenizer.h"

namespace moe {

/// [data] of a run: which corpus, which directions, how much of it, how it is batched.
struct DataConfig {
  std::string corpus = "gettext";      ///< gettext (the default corpus, built here) | folder
  std::string root;                    ///< folder corpora: the root (pair or multi-way layout)
  std::string languages = "de,fr,es";  ///< the non-pivot languages, comma-separated
  std::string pivot = "en";
  /// pivot-xx (e.g. en→de), xx-pivot, both, or an explicit list such as "en-de,fr-en".
  std::string directions = "both";
  int64_t max_train_pairs = 0;                    ///< per direction; 0 = all
  int64_t max_valid_sentences = 500;              ///< per direction; 0 = all
  int64_t max_test_sentences = 0;                 ///< per direction; 0 = all
  int64_t max_line_bytes = 1024;                  ///< longer pairs are skipped and counted
  int64_t max_length = 128;                       ///< tokens per side; longer examples are skipped
  double temperature = 1.0;                       ///< direction sampling temperature (5 = OPUS-100-style flattening)
  int64_t max_tokens = 4096;                      ///< tokens per training micro-batch
  int64_t prefetch = -1;  ///< training batches prepared ahead on a host thread (0 = none; -1 = 4 on CUDA, 0 on the CPU)
  std::string locale_root = "/usr/share/locale";  ///< gettext corpus source
  std::string cache_dir = "runs/cache";           ///< built corpora and tokenizers, shared across runs
};

/// [tokenizer] of a run: the joint SentencePiece model.
struct TokenizerConfig {
  int64_t vocab_size = 8000;
  std::string model_type = "unigram";
  double character_coverage = 1.0;
  int64_t input_sentence_size = 1000000;
};

/// The directions of a run: {"en-de", "de-en", ...} from data.directions/languages/pivot. Throws
/// moe::Error naming the key for a malformed list.
std::vector<std::pair<std::string, std::string>> run_directions(const DataConfig& data);
/// "en-de".
std::string direction_name(const std::pair<std::string, std::string>& direction);
/// The tag piece of a target language: "<2de>".
std::string language_tag(const std::string& language);

/// The corpus of a run, tokenised.
struct TranslationData {
  std::vector<std::pair<std::string, std::string>> directions;  ///< (source, target) languages
  std::string corpus_root;
  SentencePieceTokenizer tokenizer;
  std::vector<std::vector<Example>> train, valid;  ///< per direction
  std::vector<ParallelText> eval_text;             ///< per direction: the evaluation split (raw text)
};

struct TranslationDataOptions {
  std::string eval_split = "test";  ///< test | valid: the split evaluation decodes
  uint64_t tokenizer_seed = 1;      ///< SentencePiece's input-sampling seed
  /// When set (a resumed run, a checkpoint's own model), used instead of training or loading one.
  const SentencePieceTokenizer* tokenizer = nullptr;
};

/// Builds (or reuses from data.cache_dir) the corpus and the tokenizer, reads every direction's
/// train, valid and evaluation splits and encodes them. Throws moe::Error naming the file, the
/// direction or the key at fault.
TranslationData build_translation_data(const DataConfig& data, const TokenizerConfig& tokenizer,
                                       const TranslationDataOptions& options = {});

}  // namespace moe
