// The translation data pipeline (see moe/data/translation_data.h).
#include "moe/data/translation_data.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <regex>
#include <sstream>

#include "moe/core/error.h"
#include "moe/core/hash.h"
#include "moe/core/logging.h"
#include "moe/core/option_fields.h"
#include "moe/data/gettext_corpus.h"

namespace moe {
namespace fs = std::filesystem;

namespace {

std::string hex64(uint64_t v) {
  std::ostringstream out;
  out << std::hex << std::setw(16) << std::setfill('0') << v;
  return out.str();
}

template <typename... Args>
void info(const Args&... args) {
  log_info(detail::concat(args...));
}

// Temporaries of a data build killed on the way (gettext-<key>.tmp.<pid>/, spm-input.<pid>.txt,
// tokenizers/spm-<key>.tmp<pid>.*) whose process is gone: removed, so that kills leave nothing behind.
void remove_stale_temporaries(const fs::path& dir) {
  static const std::regex pattern(R"(^(gettext-.*\.tmp\.|spm-input\.|spm-.*\.tmp)(\d+)(\..*)?$)");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const auto name = e.path().filename().string();
    if (!std::regex_match(name, m, pattern)) continue;
    const auto pid = static_cast<pid_t>(std::stol(m[2]));
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    fs::remove_all(e.path(), ec);
    log_warn(detail::concat("[data] removed ", e.path().string(), " (left by process ", pid, ", which is gone)"));
  }
}

// The gettext corpus, built once per (locale folder, languages, options) under the cache folder.
std::string gettext_corpus_root(const DataConfig& c) {
  MOE_CHECK(c.pivot == "en", "data.pivot must be 'en' for the gettext corpus (English msgids), got '", c.pivot, "'");
  GettextCorpusOptions g;
  g.locale_root = c.locale_root;
  g.languages.clear();
  for (const auto& [src, tgt] : run_directions(c)) {
    const auto& lang = src == "en" ? tgt : src;
    MOE_CHECK(src == "en" || tgt == "en", "data.directions: the gettext corpus pairs English with each language; got ",
              src, "-", tgt);
    if (std::find(g.languages.begin(), g.languages.end(), lang) == g.languages.end()) g.languages.push_back(lang);
  }
  std::sort(g.languages.begin(), g.languages.end());
  std::string key = "gettext-v1|" + g.locale_root + "|" + std::to_string(g.min_chars) + "|" +
                    std::to_string(g.max_chars) + "|" + std::to_string(g.valid_per_mille) + "|" +
                    std::to_string(g.test_per_mille);
  for (const auto& l : g.languages) key += "|" + l;
  const fs::path dir = fs::path(c.cache_dir) / ("gettext-" + hex64(fnv1a64(key)).substr(0, 12));
  if (fs::exists(dir / "COMPLETE")) {
    info("[data] reusing the gettext corpus in ", dir.string());
    return dir.string();
  }
  info("[data] building the gettext corpus (", g.languages.size(), " languages) from ", g.locale_root, " into ",
       dir.string());
  const fs::path tmp = dir.string() + ".tmp." + std::to_string(::getpid());
  fs::remove_all(tmp);
  auto report = build_gettext_corpus(tmp.string(), g);
  for (const auto& [lang, splits] : report.pairs) {
    std::ostringstream line;
    line << "[data] en-" << lang << ": " << report.catalogs.at(lang) << " catalogs;";
    for (const auto& [split, n] : splits) line << " " << split << " " << n;
    log_info(line.str());
  }
  std::ofstream(tmp / "COMPLETE") << key << "\n";
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) fs::remove_all(tmp);  // another process finished first: use its copy
  MOE_CHECK(fs::exists(dir / "COMPLETE"), "[data] could not create the corpus folder ", dir.string(), ": ",
            ec.message());
  return dir.string();
}

ParallelText read_capped(const std::string& root, const std::pair<std::string, std::string>& d,
                         const std::string& split, int64_t cap, int64_t max_line_bytes) {
  CorpusReadOptions o;
  o.max_line_bytes = max_line_bytes;
  auto text = read_parallel(root, d.first, d.second, split, o);
  if (text.skipped_long > 0)
    info("[data] ", direction_name(d), " ", split, ": skipped ", text.skipped_long, " pairs longer than ",
         max_line_bytes, " bytes");
  if (cap > 0 && static_cast<int64_t>(text.source.size()) > cap) {
    text.source.resize(static_cast<size_t>(cap));
    text.target.resize(static_cast<size_t>(cap));
  }
  return text;
}

}  // namespace

std::string direction_name(const std::pair<std::string, std::string>& d) { return d.first + "-" + d.second; }

std::string language_tag(const std::string& language) { return "<2" + language + ">"; }

std::vector<std::pair<std::string, std::string>> run_directions(const DataConfig& data) {
  std::vector<std::string> langs;
  std::stringstream ss(data.languages);
  for (std::string item; std::getline(ss, item, ',');) {
    item.erase(std::remove_if(item.begin(), item.end(), ::isspace), item.end());
    if (!item.empty()) langs.push_back(item);
  }
  std::vector<std::pair<std::string, std::string>> out;
  if (data.directions == "both" || data.directions == "pivot-xx" || data.directions == "xx-pivot") {
    MOE_CHECK(!langs.empty(), "data.languages must list at least one language, got '", data.languages, "'");
    for (const auto& l : langs) {
      MOE_CHECK(l != data.pivot, "data.languages must not contain the pivot '", data.pivot, "'");
      if (data.directions != "xx-pivot") out.emplace_back(data.pivot, l);
      if (data.directions != "pivot-xx") out.emplace_back(l, data.pivot);
    }
    return out;
  }
  std::stringstream ds(data.directions);
  for (std::string item; std::getline(ds, item, ',');) {
    item.erase(std::remove_if(item.begin(), item.end(), ::isspace), item.end());
    const auto dash = item.find('-');
    MOE_CHECK(dash != std::string::npos && dash > 0 && dash + 1 < item.size(), "data.directions: '", item,
              "' is not of the form src-tgt (or use pivot-xx, xx-pivot, both)");
    out.emplace_back(item.substr(0, dash), item.substr(dash + 1));
  }
  MOE_CHECK(!out.empty(), "data.directions is empty");
  return out;
}

TranslationData build_translation_data(const DataConfig& c, const TokenizerConfig& t,
                                       const TranslationDataOptions& options) {
  std::error_code ec;
  MOE_CHECK(!fs::exists(c.cache_dir, ec) || fs::is_directory(c.cache_dir, ec), "data.cache_dir '",
            printable(c.cache_dir), "' is not a folder");
  fs::create_directories(fs::path(c.cache_dir) / "tokenizers", ec);
  MOE_CHECK(!ec, "data.cache_dir '", printable(c.cache_dir), "' cannot be created: ", ec.message());
  remove_stale_temporaries(c.cache_dir);
  remove_stale_temporaries(fs::path(c.cache_dir) / "tokenizers");
  TranslationData data;
  data.directions = run_directions(c);
  data.corpus_root = c.corpus == "gettext" ? gettext_corpus_root(c) : c.root;
  std::vector<ParallelText> train_text, valid_text;
  for (const auto& d : data.directions) {
    train_text.push_back(read_capped(data.corpus_root, d, "train", c.max_train_pairs, c.max_line_bytes));
    valid_text.push_back(read_capped(data.corpus_root, d, "valid", c.max_valid_sentences, c.max_line_bytes));
    const int64_t eval_cap = options.eval_split == "valid" ? c.max_valid_sentences : c.max_test_sentences;
    data.eval_text.push_back(read_capped(data.corpus_root, d, options.eval_split, eval_cap, c.max_line_bytes));
  }
  std::vector<std::string> tags;
  for (const auto& d : data.directions) {
    const auto tag = language_tag(d.second);
    if (std::find(tags.begin(), tags.end(), tag) == tags.end()) tags.push_back(tag);
  }
  if (options.tokenizer != nullptr) {
    data.tokenizer = *options.tokenizer;
  } else {
    // One joint model over both sides of every language pair's training text (each pair once).
    fs::create_directories(c.cache_dir);
    const fs::path input = fs::path(c.cache_dir) / ("spm-input." + std::to_string(::getpid()) + ".txt");
    {
      std::ofstream out(input);
      MOE_CHECK(out.good(), "[data] cannot write ", input.string());
      std::vector<std::pair<std::string, std::string>> seen;
      for (size_t i = 0; i < data.directions.size(); ++i) {
        auto key = std::minmax(data.directions[i].first, data.directions[i].second);
        if (std::find(seen.begin(), seen.end(), std::make_pair(key.first, key.second)) != seen.end()) continue;
        seen.emplace_back(key.first, key.second);
        for (size_t j = 0; j < train_text[i].source.size(); ++j)
          out << train_text[i].source[j] << '\n' << train_text[i].target[j] << '\n';
      }
    }
    SentencePieceOptions so;
    so.vocab_size = static_cast<int>(t.vocab_size);
    so.model_type = t.model_type;
    so.character_coverage = t.character_coverage;
    so.input_sentence_size = t.input_sentence_size;
    so.user_symbols = tags;
    so.seed = options.tokenizer_seed;
    bool trained = false;
    try {
      data.tokenizer = SentencePieceTokenizer::train_or_load(
          {input.string()}, (fs::path(c.cache_dir) / "tokenizers").string(), so, &trained);
    } catch (...) {
      fs::remove(input);
      throw;
    }
    fs::remove(input);
    info("[data] SentencePiece ", t.model_type, " vocabulary of ", data.tokenizer.vocab_size(), " pieces (",
         trained ? "trained" : "cached", ": ", data.tokenizer.model_path(), ")");
  }
  for (size_t i = 0; i < data.directions.size(); ++i) {
    const auto tag = language_tag(data.directions[i].second);
    const auto di = static_cast<int64_t>(i);
    data.train.push_back(encode_examples(train_text[i], data.tokenizer, tag, di, c.max_length));
    data.valid.push_back(encode_examples(valid_text[i], data.tokenizer, tag, di, c.max_length));
    MOE_CHECK(!data.train.back().empty(), "[data] ", direction_name(data.directions[i]),
              ": no training example fits data.max_length=", c.max_length);
    info("[data] ", direction_name(data.directions[i]), ": train ", data.train.back().size(), " (of ",
         train_text[i].source.size(), "), valid ", data.valid.back().size(), ", ", options.eval_split, " ",
         data.eval_text[i].source.size());
  }
  return data;
}

}  // namespace moe
