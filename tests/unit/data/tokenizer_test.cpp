// SentencePiece tokenizer: training on a synthetic bilingual corpus, lossless round trips (byte
// fallback covers characters never seen in training), language tags as single pieces, the cache by
// content hash, serialization, and option errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>

#include "errors.h"
#include "moe/data/batching.h"
#include "moe/data/tokenizer.h"
#include "scratch.h"

namespace moe {
namespace {

// 3000 lines of pseudo-sentences in two "languages" built from fixed word lists.
std::vector<std::string> write_corpus(const std::filesystem::path& dir) {
  const std::vector<std::string> en{"the", "file", "cannot", "be", "opened", "save", "changes", "before", "closing",
                                    "window", "package", "installed", "remove", "error", "while", "reading"};
  const std::vector<std::string> de{"die", "Datei", "kann", "nicht", "geöffnet", "werden", "Änderungen", "speichern",
                                    "vor", "dem", "Schließen", "Fenster", "Paket", "installiert", "Fehler", "beim"};
  std::mt19937 rng(7);
  std::vector<std::string> files;
  for (const auto* lang : {"en", "de"}) {
    const auto& words = std::string(lang) == "en" ? en : de;
    const auto path = dir / (std::string("train.") + lang);
    std::ofstream out(path);
    for (int line = 0; line < 1500; ++line) {
      const int n = 3 + static_cast<int>(rng() % 8);
      for (int w = 0; w < n; ++w) out << (w ? " " : "") << words[rng() % words.size()];
      out << (line % 3 == 0 ? "." : "") << "\n";
    }
    files.push_back(path.string());
  }
  return files;
}

SentencePieceOptions small_options() {
  SentencePieceOptions o;
  o.vocab_size = 400;  // byte fallback alone needs 256 pieces
  o.user_symbols = {"<2en>", "<2de>"};
  o.num_threads = 1;
  return o;
}

TEST(TokenizerTest, TrainsRoundTripsAndCaches) {
  auto dir = testing::scratch("spm");
  auto files = write_corpus(dir);
  bool trained = false;
  auto tok = SentencePieceTokenizer::train_or_load(files, (dir / "cache").string(), small_options(), &trained);
  EXPECT_TRUE(trained);
  EXPECT_LE(tok.vocab_size(), 400);
  for (const std::string text : {"the file cannot be opened.", "Die Datei kann nicht geöffnet werden",
                                 "Grüße aus Tōkyō 🙂 — 東京!", "  two  spaces  "}) {
    auto ids = tok.encode(text);
    std::string expected = text;
    if (text == "  two  spaces  ") expected = "two spaces";  // SentencePiece normalises whitespace runs
    EXPECT_EQ(tok.decode(ids), expected) << text;
    for (int id : ids) EXPECT_NE(id, SentencePieceTokenizer::kUnk) << text;  // byte fallback: nothing unknown
  }
  // A language tag is exactly one piece (after SentencePiece's dummy-prefix "▁"); models prepend its
  // id directly.
  const int tag = tok.piece_id("<2de>");
  auto tagged = tok.encode("<2de> the file");
  EXPECT_EQ(std::count(tagged.begin(), tagged.end(), tag), 1);
  auto pieces = tok.encode_pieces("<2en> x");
  EXPECT_EQ(std::count(pieces.begin(), pieces.end(), "<2en>"), 1);
  EXPECT_EQ(tok.decode({tag}), "<2de>");
  EXPECT_EQ(testing::error_of([&] { tok.piece_id("<2xx>"); }), "piece '<2xx>' is not in the vocabulary");

  // Examples: the target-language tag first on the source side, eos last on both sides.
  ParallelText text{"en", "de", "valid", {"the file", "save changes"}, {"die Datei", "Änderungen speichern"}, 0};
  auto examples = encode_examples(text, tok, "<2de>", 3);
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_EQ(examples[0].source.front(), tag);
  EXPECT_EQ(examples[0].source.back(), SentencePieceTokenizer::kEos);
  EXPECT_EQ(examples[1].target.back(), SentencePieceTokenizer::kEos);
  EXPECT_EQ(examples[1].direction, 3);
  EXPECT_EQ(tok.decode(std::vector<int>(examples[1].target.begin(), examples[1].target.end() - 1)), "Änderungen speichern");
  EXPECT_EQ(encode_examples(text, tok, "<2de>", 0, /*max_length=*/3).size(), 0u);  // too long: skipped

  // Same files and options: loaded from the cache, identical encodings.
  bool retrained = true;
  auto cached = SentencePieceTokenizer::train_or_load(files, (dir / "cache").string(), small_options(), &retrained);
  EXPECT_FALSE(retrained);
  EXPECT_EQ(cached.encode("save changes before closing"), tok.encode("save changes before closing"));
  // Serialized bytes (for checkpoints) reload to the same model.
  auto restored = SentencePieceTokenizer::from_serialized(tok.serialized());
  EXPECT_EQ(restored.encode("Fehler beim Lesen"), tok.encode("Fehler beim Lesen"));
  // Different options: a different model.
  auto other = small_options();
  other.vocab_size = 380;
  auto second = SentencePieceTokenizer::train_or_load(files, (dir / "cache").string(), other, &retrained);
  EXPECT_TRUE(retrained);
  EXPECT_NE(second.model_path(), tok.model_path());
}

TEST(TokenizerTest, IdentityNormalizationIsLossless) {
  auto dir = testing::scratch("spm_identity");
  auto files = write_corpus(dir);
  auto o = small_options();
  o.normalization = "identity";
  auto tok = SentencePieceTokenizer::train_or_load(files, (dir / "cache").string(), o);
  for (const std::string text : {"wait…", "全角，（括弧）", "x²"}) EXPECT_EQ(tok.decode(tok.encode(text)), text);
  auto nfkc = SentencePieceTokenizer::train_or_load(files, (dir / "cache").string(), small_options());
  EXPECT_EQ(nfkc.decode(nfkc.encode("wait…")), "wait...");  // nmt_nfkc maps the ellipsis
}

TEST(TokenizerTest, ClearErrors) {
  auto dir = testing::scratch("spm_errors");
  auto o = small_options();
  o.vocab_size = 4;
  EXPECT_EQ(testing::error_of([&] { SentencePieceTokenizer::train_or_load({"x"}, dir.string(), o); }),
            "SentencePieceOptions.vocab_size must be >= 8, got 4");
  EXPECT_EQ(testing::error_of([&] {
              SentencePieceTokenizer::train_or_load({(dir / "missing.txt").string()}, dir.string(), small_options());
            }),
            "SentencePieceTokenizer: cannot open training file '" + (dir / "missing.txt").string() + "'");
  EXPECT_NE(testing::error_of([&] { SentencePieceTokenizer::load((dir / "none.model").string()); })
                .find("cannot load SentencePiece model"),
            std::string::npos);
}

}  // namespace
}  // namespace moe
