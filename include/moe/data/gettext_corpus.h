// The project's own default corpus: parallel text extracted from the machine's gettext message
// catalogs (software-message translation: real human translations, narrow domain). For each target
// language, every <locale_root>/<lang>/LC_MESSAGES/*.mo is decompiled with `msgunfmt`, and each
// English msgid is paired with its msgstr:
//   - the header, untranslated entries and pairs identical on both sides are dropped;
//   - plural entries use msgid and msgstr[0];
//   - multi-line entries are split by line when both sides have the same number of lines, else kept
//     whole if short;
//   - format markers: keyboard accelerators are removed (`(_F)` groups; and when the English side
//     starts a word with `_` or `&`, the first marker on each side, as in `_Open` / `ö_ffnen`);
//     printf-style placeholders (%s, %d, %1$s) are kept on both sides, and entries with no text
//     outside placeholders are dropped;
//   - whitespace is collapsed; pairs outside [min_chars, max_chars] are dropped; duplicates dropped;
//   - a deterministic split by a hash of the English side: 2% valid, 2% test, the rest train.
// Written as pair folders <out>/en-<lang>/{train,valid,test}.{en,<lang>}, readable by read_parallel.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moe {

struct GettextCorpusOptions {
  std::string locale_root = "/usr/share/locale";
  std::vector<std::string> languages{"de", "fr", "es", "ru", "it"};
  int64_t min_catalogs = 10;     ///< fewer catalogs for a language is an error (with install advice)
  int64_t min_chars = 2;
  int64_t max_chars = 300;
  int valid_per_mille = 20;
  int test_per_mille = 20;
  void validate() const;
};

struct GettextCorpusReport {
  std::map<std::string, int64_t> catalogs;  ///< per language
  std::map<std::string, std::map<std::string, int64_t>> pairs;  ///< language -> split -> pairs
  int64_t unreadable_catalogs = 0;
};

/// One catalog's pairs (msgunfmt + PO parsing + the cleaning rules above, before dedup and split).
std::vector<std::pair<std::string, std::string>> extract_catalog_pairs(const std::string& mo_path,
                                                                       const GettextCorpusOptions& options);

/// Builds the corpus under `out_dir`. Throws moe::Error when msgunfmt is missing or a language has
/// fewer than min_catalogs catalogs, saying what to install.
GettextCorpusReport build_gettext_corpus(const std::string& out_dir, const GettextCorpusOptions& options = {});

}  // namespace moe
