// SentencePiece tokenizer (see moe/data/tokenizer.h). Compiled without LibTorch's include folder:
// Debian's sentencepiece headers define their own absl::string_view shim.
#include "moe/data/tokenizer.h"

#include "moe/core/hash.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "moe/core/error.h"

namespace moe {
namespace fs = std::filesystem;
namespace {

std::string hex(uint64_t v) {
  char buffer[17];
  std::snprintf(buffer, sizeof(buffer), "%016llx", static_cast<unsigned long long>(v));
  return buffer;
}

}  // namespace

void SentencePieceOptions::validate() const {
  MOE_CHECK(vocab_size >= 8, "SentencePieceOptions.vocab_size must be >= 8, got ", vocab_size);
  MOE_CHECK(model_type == "unigram" || model_type == "bpe", "SentencePieceOptions.model_type must be unigram or bpe, got '",
            model_type, "'");
  MOE_CHECK(character_coverage > 0 && character_coverage <= 1,
            "SentencePieceOptions.character_coverage must be in (0, 1], got ", character_coverage);
  MOE_CHECK(num_threads >= 1, "SentencePieceOptions.num_threads must be >= 1, got ", num_threads);
  MOE_CHECK(normalization == "nmt_nfkc" || normalization == "identity" || normalization == "nfkc" ||
                normalization == "nmt_nfkc_cf" || normalization == "nfkc_cf",
            "SentencePieceOptions.normalization must be one of nmt_nfkc, nfkc, nmt_nfkc_cf, nfkc_cf, identity; got '",
            normalization, "'");
  for (const auto& s : user_symbols) {
    MOE_CHECK(!s.empty() && s.find_first_of(", \t\n") == std::string::npos,
              "SentencePieceOptions.user_symbols entries must be non-empty without commas or spaces, got '", s, "'");
  }
}

std::string SentencePieceOptions::trainer_flags() const {
  std::ostringstream flags;
  flags << "--vocab_size=" << vocab_size << " --model_type=" << model_type << " --character_coverage=" << character_coverage
        << " --byte_fallback=" << (byte_fallback ? "true" : "false") << " --input_sentence_size=" << input_sentence_size
        << " --shuffle_input_sentence=true --num_threads=" << num_threads
        << " --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3 --hard_vocab_limit=false --minloglevel=2"
        << " --normalization_rule_name=" << normalization;
  if (!user_symbols.empty()) {
    flags << " --user_defined_symbols=";
    for (size_t i = 0; i < user_symbols.size(); ++i) flags << (i ? "," : "") << user_symbols[i];
  }
  return flags.str();
}

SentencePieceTokenizer SentencePieceTokenizer::train_or_load(const std::vector<std::string>& text_files,
                                                             const std::string& cache_dir,
                                                             const SentencePieceOptions& options, bool* trained) {
  options.validate();
  MOE_CHECK(!text_files.empty(), "SentencePieceTokenizer: no training files given");
  const std::string flags = options.trainer_flags();
  uint64_t h = fnv1a64(kFnv1a64Offset, flags.data(), flags.size());
  h = fnv1a64(h, &options.seed, sizeof(options.seed));
  for (const auto& file : text_files) {
    MOE_CHECK(file.find_first_of(", \t\n") == std::string::npos,
              "SentencePieceTokenizer: training file paths must not contain commas or whitespace (SentencePiece "
              "flag syntax), got '", file, "'");
    std::ifstream in(file, std::ios::binary);
    MOE_CHECK(in.good(), "SentencePieceTokenizer: cannot open training file '", file, "'");
    uint64_t size = 0;
    std::vector<char> chunk(1 << 20);
    while (in.read(chunk.data(), static_cast<std::streamsize>(chunk.size())) || in.gcount() > 0) {
      h = fnv1a64(h, chunk.data(), static_cast<size_t>(in.gcount()));
      size += static_cast<uint64_t>(in.gcount());
    }
    MOE_CHECK(size > 0, "SentencePieceTokenizer: training file '", file, "' is empty");
    h = fnv1a64(h, &size, sizeof(size));  // file boundaries count
  }
  MOE_CHECK(cache_dir.find_first_of(", \t\n") == std::string::npos,
            "SentencePieceTokenizer: the cache folder must not contain commas or whitespace, got '", cache_dir, "'");
  fs::create_directories(cache_dir);
  const fs::path model = fs::path(cache_dir) / ("spm-" + hex(h) + ".model");
  if (trained != nullptr) *trained = false;
  if (fs::exists(model)) return load(model.string());

  // A process-unique temporary prefix; the rename into place is atomic, and a model another process
  // finished first is simply used.
  const fs::path prefix = fs::path(cache_dir) / ("spm-" + hex(h) + ".tmp" + std::to_string(::getpid()));
  std::string inputs;
  for (size_t i = 0; i < text_files.size(); ++i) inputs += (i ? "," : "") + text_files[i];
  sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned int>(options.seed));  // input sampling
  const auto status =
      sentencepiece::SentencePieceTrainer::Train("--input=" + inputs + " --model_prefix=" + prefix.string() + " " + flags);
  MOE_CHECK(status.ok(), "SentencePiece training failed: ", status.ToString());
  std::error_code ignored;
  fs::rename(prefix.string() + ".vocab", fs::path(cache_dir) / ("spm-" + hex(h) + ".vocab"), ignored);
  if (fs::exists(model)) {
    fs::remove(prefix.string() + ".model", ignored);
  } else {
    fs::rename(prefix.string() + ".model", model);
  }
  if (trained != nullptr) *trained = true;
  return load(model.string());
}

SentencePieceTokenizer SentencePieceTokenizer::load(const std::string& model_path) {
  SentencePieceTokenizer t;
  t.processor_ = std::make_shared<sentencepiece::SentencePieceProcessor>();
  const auto status = t.processor_->Load(model_path);
  MOE_CHECK(status.ok(), "cannot load SentencePiece model '", model_path, "': ", status.ToString());
  t.model_path_ = model_path;
  return t;
}

SentencePieceTokenizer SentencePieceTokenizer::from_serialized(const std::string& bytes) {
  SentencePieceTokenizer t;
  t.processor_ = std::make_shared<sentencepiece::SentencePieceProcessor>();
  const auto status = t.processor_->LoadFromSerializedProto(bytes);
  MOE_CHECK(status.ok(), "cannot load a SentencePiece model from ", bytes.size(), " bytes: ", status.ToString());
  return t;
}

std::vector<int> SentencePieceTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = processor_->Encode(text, &ids);
  MOE_CHECK(status.ok(), "SentencePiece encode failed: ", status.ToString());
  return ids;
}

std::vector<std::string> SentencePieceTokenizer::encode_pieces(const std::string& text) const {
  std::vector<std::string> pieces;
  const auto status = processor_->Encode(text, &pieces);
  MOE_CHECK(status.ok(), "SentencePiece encode failed: ", status.ToString());
  return pieces;
}

std::string SentencePieceTokenizer::decode(const std::vector<int>& ids) const {
  std::string text;
  const auto status = processor_->Decode(ids, &text);
  MOE_CHECK(status.ok(), "SentencePiece decode failed: ", status.ToString());
  return text;
}

int SentencePieceTokenizer::piece_id(const std::string& piece) const {
  const int id = processor_->PieceToId(piece);
  MOE_CHECK(id != kUnk || piece == processor_->IdToPiece(kUnk), "piece '", piece, "' is not in the vocabulary");
  return id;
}

int SentencePieceTokenizer::vocab_size() const { return processor_->GetPieceSize(); }

std::string SentencePieceTokenizer::serialized() const { return processor_->serialized_model_proto(); }

}  // namespace moe
