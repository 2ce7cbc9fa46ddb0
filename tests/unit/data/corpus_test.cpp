// Corpus reading (both layouts, strict errors) and the gettext default-corpus builder on catalogs
// compiled here with msgfmt from hand-written PO text, plus one build from the machine's catalogs.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "errors.h"
#include "scratch.h"
#include "moe/data/corpus.h"
#include "moe/data/gettext_corpus.h"

namespace moe {
namespace {
namespace fs = std::filesystem;

using testing::scratch;

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

TEST(CorpusTest, PairAndMultiWayLayouts) {
  auto root = scratch("layouts");
  write(root / "en-de" / "train.en", "Hello\r\nA very long line indeed\nBye\n");
  write(root / "en-de" / "train.de", "Hallo\r\nEine sehr lange Zeile wirklich\nTschüss");
  CorpusReadOptions options;
  options.max_line_bytes = 20;
  auto pair = read_parallel(root.string(), "en", "de", "train", options);
  EXPECT_EQ(pair.source, (std::vector<std::string>{"Hello", "Bye"}));  // CRLF normalised, long pair skipped
  EXPECT_EQ(pair.target, (std::vector<std::string>{"Hallo", "Tschüss"}));
  EXPECT_EQ(pair.skipped_long, 1);
  auto reverse = read_parallel(root.string(), "de", "en", "train");  // de-en finds the en-de folder
  EXPECT_EQ(reverse.source.front(), "Hallo");
  auto multi = scratch("multiway");
  write(multi / "valid.en", "a\nb\n");
  write(multi / "valid.fr", "x\ny\n");
  EXPECT_EQ(read_parallel(multi.string(), "fr", "en", "valid").target, (std::vector<std::string>{"a", "b"}));
}

TEST(CorpusTest, ErrorsNameTheFileAndLine) {
  auto root = scratch("errors");
  write(root / "train.en", "one\ntwo\n");
  write(root / "train.de", "eins\n");
  EXPECT_EQ(testing::error_of([&] { read_parallel(root.string(), "en", "de", "train"); }),
            "'" + (root / "train.en").string() + "' has 2 lines but '" + (root / "train.de").string() + "' has 1");
  EXPECT_NE(testing::error_of([&] { read_parallel(root.string(), "en", "de", "test"); })
                .find("has no split 'test' for en-de"),
            std::string::npos);
  write(root / "valid.en", "");
  write(root / "valid.de", "x\n");
  EXPECT_EQ(testing::error_of([&] { read_parallel(root.string(), "en", "de", "valid"); }),
            "'" + (root / "valid.en").string() + "' is empty");
  write(root / "dev.en", "ok\nbad \xC3\x28 byte\n");
  write(root / "dev.de", "ok\nok\n");
  EXPECT_EQ(testing::error_of([&] { read_parallel(root.string(), "en", "de", "dev"); }),
            "'" + (root / "dev.en").string() + "' line 2 is not valid UTF-8");
  write(root / "x.en", "a\n");
  EXPECT_EQ(testing::error_of([&] { read_parallel(root.string(), "en", "de", "x"); }),
            "missing file '" + (root / "x.de").string() + "'");
  EXPECT_TRUE(is_valid_utf8("Grüße 東京 🙂"));
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));  // surrogate
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));      // overlong
}

// Compiles PO text into <root>/<lang>/LC_MESSAGES/<name>.mo with msgfmt.
void make_catalog(const fs::path& root, const std::string& lang, const std::string& name, const std::string& po) {
  const auto dir = root / lang / "LC_MESSAGES";
  fs::create_directories(dir);
  write(dir / (name + ".po"), po);
  const std::string cmd = "msgfmt -o '" + (dir / (name + ".mo")).string() + "' '" + (dir / (name + ".po")).string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  fs::remove(dir / (name + ".po"));
}

const char* kHeader =
    "msgid \"\"\nmsgstr \"\"\n\"Content-Type: text/plain; charset=UTF-8\\n\"\n\"Plural-Forms: nplurals=2; plural=(n != 1);\\n\"\n\n";

TEST(GettextCorpusTest, CleaningRules) {
  if (std::system("command -v msgfmt >/dev/null 2>&1") != 0) GTEST_SKIP() << "msgfmt not installed";
  auto root = scratch("catalogs");
  std::string po = kHeader;
  po += "msgid \"Hello world\"\nmsgstr \"Hallo Welt\"\n\n";
  po += "msgid \"_Open File\"\nmsgstr \"Datei ö_ffnen\"\n\n";
  po += "msgid \"Save (_S)\"\nmsgstr \"Speichern (_S)\"\n\n";
  po += "msgid \"Same\"\nmsgstr \"Same\"\n\n";
  po += "msgid \"Untranslated\"\nmsgstr \"\"\n\n";
  po += "msgid \"\"\n\"Line one\\n\"\n\"Line two\\n\"\nmsgstr \"\"\n\"Zeile eins\\n\"\n\"Zeile zwei\\n\"\n\n";
  po += "msgid \"One file\"\nmsgid_plural \"%d files\"\nmsgstr[0] \"Eine Datei\"\nmsgstr[1] \"%d Dateien\"\n\n";
  po += "msgid \"cannot open %s: %s\"\nmsgstr \"%s kann nicht geöffnet werden: %s\"\n\n";
  po += "msgid \"%s\"\nmsgstr \"%s:\"\n\n";  // no text outside placeholders
  po += "msgid \"file_name is %s\"\nmsgstr \"file_name ist %s\"\n";  // not a mnemonic: kept as is
  make_catalog(root, "de", "app", po);
  GettextCorpusOptions options;
  auto pairs = extract_catalog_pairs((root / "de" / "LC_MESSAGES" / "app.mo").string(), options);
  std::map<std::string, std::string> got(pairs.begin(), pairs.end());
  const std::map<std::string, std::string> expected{
      {"Hello world", "Hallo Welt"},
      {"Open File", "Datei öffnen"},  // the English label is a mnemonic: each side loses its first marker
      {"Save", "Speichern"},
      {"Line one", "Zeile eins"},
      {"Line two", "Zeile zwei"},
      {"One file", "Eine Datei"},
      {"cannot open %s: %s", "%s kann nicht geöffnet werden: %s"},
      {"file_name is %s", "file_name ist %s"},
  };
  EXPECT_EQ(got, expected);
}

TEST(GettextCorpusTest, BuildsDeterministicSplitsAndExplainsMissingCatalogs) {
  if (std::system("command -v msgfmt >/dev/null 2>&1") != 0) GTEST_SKIP() << "msgfmt not installed";
  auto root = scratch("build_locale");
  for (int c = 0; c < 2; ++c) {
    std::string po = kHeader;
    for (int i = 0; i < 60; ++i) {  // the same messages in both catalogs: duplicates are dropped
      po += "msgid \"Message number " + std::to_string(i) + "\"\nmsgstr \"Nachricht Nummer " + std::to_string(i) + "\"\n\n";
    }
    make_catalog(root, "de", "app" + std::to_string(c), po);
  }
  GettextCorpusOptions options;
  options.locale_root = root.string();
  options.languages = {"de"};
  options.min_catalogs = 2;
  options.valid_per_mille = 200;
  options.test_per_mille = 200;
  auto out = scratch("build_out");
  auto report = build_gettext_corpus(out.string(), options);
  EXPECT_EQ(report.catalogs.at("de"), 2);
  const auto& splits = report.pairs.at("de");
  EXPECT_EQ(splits.at("train") + splits.at("valid") + splits.at("test"), 60);
  auto valid = read_parallel(out.string(), "en", "de", "valid");
  EXPECT_EQ(static_cast<int64_t>(valid.source.size()), splits.at("valid"));
  auto again = scratch("build_out2");
  build_gettext_corpus(again.string(), options);
  EXPECT_EQ(read_parallel(again.string(), "en", "de", "valid").source, valid.source);  // deterministic
  options.languages = {"xx"};
  const auto message = testing::error_of([&] { build_gettext_corpus(out.string(), options); });
  EXPECT_NE(message.find("needs at least 2 gettext catalogs for 'xx'"), std::string::npos) << message;
  EXPECT_NE(message.find("apt-get install"), std::string::npos) << message;
}

TEST(GettextCorpusTest, MachineCatalogs) {
  GettextCorpusOptions options;
  options.languages = {"de"};
  const fs::path de = fs::path(options.locale_root) / "de" / "LC_MESSAGES";
  if (!fs::is_directory(de) || std::system("command -v msgunfmt >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "no German catalogs or msgunfmt on this machine";
  }
  auto out = scratch("machine");
  GettextCorpusReport report;
  try {
    report = build_gettext_corpus(out.string(), options);
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  EXPECT_GT(report.pairs.at("de").at("train"), 1000);
  EXPECT_GT(report.pairs.at("de").at("valid"), 20);
  auto train = read_parallel(out.string(), "en", "de", "train");
  EXPECT_EQ(static_cast<int64_t>(train.source.size()), report.pairs.at("de").at("train"));
}

}  // namespace
}  // namespace moe
