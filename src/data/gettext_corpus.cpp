// Default corpus from gettext message catalogs (see moe/data/gettext_corpus.h).
#include "moe/data/gettext_corpus.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "moe/core/error.h"
#include "moe/core/hash.h"
#include "moe/data/corpus.h"

namespace moe {
namespace fs = std::filesystem;
namespace {

// One PO entry as msgunfmt prints it.
struct PoEntry {
  std::string msgctxt, msgid, msgid_plural;
  std::vector<std::string> msgstr;  // msgstr, or msgstr[0..n]
};

std::string unescape(const std::string& quoted) {
  std::string out;
  for (size_t i = 1; i + 1 < quoted.size(); ++i) {  // inside the surrounding quotes
    char c = quoted[i];
    if (c == '\\' && i + 2 < quoted.size()) {
      const char e = quoted[++i];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        default: out += e; break;  // \" \\ and anything else
      }
    } else {
      out += c;
    }
  }
  return out;
}

// msgunfmt prints one entry per blank-line-separated block: keyword lines ("msgid \"...\"") followed
// by continuation lines ("\"...\""); comment lines start with '#'.
std::vector<PoEntry> parse_po(const std::string& text) {
  std::vector<PoEntry> entries;
  PoEntry current;
  std::string* field = nullptr;
  auto flush = [&] {
    if (!current.msgid.empty() || !current.msgstr.empty()) entries.push_back(std::move(current));
    current = PoEntry();
    field = nullptr;
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) {
      flush();
      continue;
    }
    if (line[0] == '#') continue;
    if (line[0] == '"') {
      if (field != nullptr) *field += unescape(line);
      continue;
    }
    const size_t quote = line.find('"');
    if (quote == std::string::npos) continue;
    const std::string keyword = line.substr(0, line.find(' '));
    if (keyword == "msgctxt") {
      field = &current.msgctxt;
    } else if (keyword == "msgid") {
      field = &current.msgid;
    } else if (keyword == "msgid_plural") {
      field = &current.msgid_plural;
    } else if (keyword.rfind("msgstr", 0) == 0) {
      current.msgstr.emplace_back();
      field = &current.msgstr.back();
    } else {
      field = nullptr;
      continue;
    }
    *field += unescape(line.substr(quote));
  }
  flush();
  return entries;
}

// msgunfmt's output, or "" when it fails (counted as an unreadable catalog by the caller).
std::string run_msgunfmt(const std::string& path) {
  std::string quoted = "'";
  for (char c : path) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  FILE* pipe = popen(("msgunfmt --no-wrap -- " + quoted + " 2>/dev/null").c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  char buffer[65536];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  return pclose(pipe) == 0 ? out : std::string();
}

bool is_word_char(unsigned char c) { return std::isalnum(c) != 0 || c >= 0x80; }

// Removes "(_F)" / "(&F)" accelerator groups (CJK translations).
std::string strip_accelerator_groups(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '(' && i + 3 < s.size() && (s[i + 1] == '_' || s[i + 1] == '&') && s[i + 3] == ')') {
      i += 3;
      continue;
    }
    out += s[i];
  }
  return out;
}

// Position of the first accelerator marker ('_' or '&' directly before a word character), or npos.
size_t first_marker(const std::string& s) {
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    if ((s[i] == '_' || s[i] == '&') && is_word_char(static_cast<unsigned char>(s[i + 1]))) return i;
  }
  return std::string::npos;
}

// Keyboard accelerators: when the English side marks one at a word start ("_Open", "&Save"), the
// entry is a mnemonic label and the first marker of each side is removed (translations put it
// anywhere: "Datei ö_ffnen"). Other underscores (file_name, %s_%d) are text and stay.
void strip_accelerators(std::string& src, std::string& tgt) {
  src = strip_accelerator_groups(src);
  tgt = strip_accelerator_groups(tgt);
  const size_t at = first_marker(src);
  if (at == std::string::npos || (at > 0 && is_word_char(static_cast<unsigned char>(src[at - 1])))) return;
  src.erase(at, 1);
  const size_t in_target = first_marker(tgt);
  if (in_target != std::string::npos) tgt.erase(in_target, 1);
}

// True when `s` has a letter outside printf-style placeholders (%s, %d, %1$s, %-10.3lf, ...).
bool has_text(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      size_t j = i + 1;
      while (j < s.size() && std::strchr("0123456789$#+- .*'lhLqjzt", s[j]) != nullptr) ++j;
      if (j < s.size()) i = j;  // skip the conversion character
      continue;
    }
    if (std::isalpha(static_cast<unsigned char>(s[i])) != 0 || static_cast<unsigned char>(s[i]) >= 0x80) return true;
  }
  return false;
}

std::string collapse_whitespace(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f') {
      space = !out.empty();
    } else {
      if (space) out += ' ';
      space = false;
      out += c;
    }
  }
  return out;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    size_t end = s.find('\n', pos);
    out.push_back(s.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  while (!out.empty() && out.back().empty()) out.pop_back();
  while (!out.empty() && out.front().empty()) out.erase(out.begin());
  return out;
}

}  // namespace

void GettextCorpusOptions::validate() const {
  MOE_CHECK(!languages.empty(), "GettextCorpusOptions.languages must not be empty");
  MOE_CHECK(min_catalogs >= 1, "GettextCorpusOptions.min_catalogs must be >= 1, got ", min_catalogs);
  MOE_CHECK(min_chars >= 1 && max_chars >= min_chars, "GettextCorpusOptions: need 1 <= min_chars <= max_chars, got ",
            min_chars, " and ", max_chars);
  MOE_CHECK(valid_per_mille >= 0 && test_per_mille >= 0 && valid_per_mille + test_per_mille < 1000,
            "GettextCorpusOptions: valid_per_mille + test_per_mille must be in [0, 1000), got ",
            valid_per_mille + test_per_mille);
}

std::vector<std::pair<std::string, std::string>> extract_catalog_pairs(const std::string& mo_path,
                                                                       const GettextCorpusOptions& options) {
  std::vector<std::pair<std::string, std::string>> out;
  auto keep = [&](std::string src, std::string tgt) {
    strip_accelerators(src, tgt);
    src = collapse_whitespace(src);
    tgt = collapse_whitespace(tgt);
    const auto n_src = static_cast<int64_t>(src.size()), n_tgt = static_cast<int64_t>(tgt.size());
    if (src == tgt || !has_text(src) || !is_valid_utf8(src) || !is_valid_utf8(tgt)) return;
    if (n_src < options.min_chars || n_tgt < options.min_chars || n_src > options.max_chars ||
        n_tgt > options.max_chars) {
      return;
    }
    out.emplace_back(std::move(src), std::move(tgt));
  };
  for (const auto& entry : parse_po(run_msgunfmt(mo_path))) {
    if (entry.msgid.empty() || entry.msgstr.empty() || entry.msgstr[0].empty()) continue;  // header, untranslated
    const auto src_lines = lines_of(entry.msgid), tgt_lines = lines_of(entry.msgstr[0]);
    if (src_lines.size() > 1 && src_lines.size() == tgt_lines.size()) {
      for (size_t i = 0; i < src_lines.size(); ++i) keep(src_lines[i], tgt_lines[i]);
    } else {
      keep(entry.msgid, entry.msgstr[0]);
    }
  }
  return out;
}

GettextCorpusReport build_gettext_corpus(const std::string& out_dir, const GettextCorpusOptions& options) {
  options.validate();
  MOE_CHECK(std::system("command -v msgunfmt >/dev/null 2>&1") == 0,
            "the default corpus needs msgunfmt; install it with: apt-get install gettext");
  GettextCorpusReport report;
  for (const auto& lang : options.languages) {
    const fs::path folder = fs::path(options.locale_root) / lang / "LC_MESSAGES";
    std::vector<std::string> catalogs;
    if (fs::is_directory(folder)) {
      for (const auto& file : fs::directory_iterator(folder)) {
        if (file.path().extension() == ".mo") catalogs.push_back(file.path().string());
      }
    }
    std::sort(catalogs.begin(), catalogs.end());
    report.catalogs[lang] = static_cast<int64_t>(catalogs.size());
    MOE_CHECK(static_cast<int64_t>(catalogs.size()) >= options.min_catalogs, "the default corpus needs at least ",
              options.min_catalogs, " gettext catalogs for '", lang, "' in ", folder.string(), ", found ",
              catalogs.size(),
              ". Install translated software, e.g. `apt-get install coreutils tar findutils diffutils gettext bash "
              "apt dpkg`; in slim container images also remove the /usr/share/locale path-exclude in "
              "/etc/dpkg/dpkg.cfg.d/ and reinstall those packages");
    std::set<std::pair<std::string, std::string>> seen;
    std::map<std::string, std::vector<std::pair<std::string, std::string>>> splits;
    for (const auto& catalog : catalogs) {
      auto pairs = extract_catalog_pairs(catalog, options);
      if (pairs.empty()) ++report.unreadable_catalogs;
      for (auto& pair : pairs) {
        if (!seen.insert(pair).second) continue;
        // The split's own constant (see kFnv1a64OffsetBefore202612): the corpus must not change.
        const uint64_t bucket = fnv1a64(kFnv1a64OffsetBefore202612, pair.first.data(), pair.first.size()) % 1000;
        const char* split = bucket < static_cast<uint64_t>(options.valid_per_mille) ? "valid"
                            : bucket < static_cast<uint64_t>(options.valid_per_mille + options.test_per_mille)
                                ? "test"
                                : "train";
        splits[split].push_back(std::move(pair));
      }
    }
    const fs::path pair_dir = fs::path(out_dir) / ("en-" + lang);
    fs::create_directories(pair_dir);
    for (const char* split : {"train", "valid", "test"}) {
      const auto& rows = splits[split];
      MOE_CHECK(!rows.empty(), "the default corpus for '", lang, "' has no ", split,
                " pairs; more catalogs are needed (see the install advice above)");
      std::ofstream src(pair_dir / (std::string(split) + ".en")), tgt(pair_dir / (std::string(split) + "." + lang));
      for (const auto& [s, t] : rows) {
        src << s << '\n';
        tgt << t << '\n';
      }
      src.close();
      tgt.close();
      MOE_CHECK(!src.fail() && !tgt.fail(), "cannot write the default corpus under '", pair_dir.string(), "'");
      report.pairs[lang][split] = static_cast<int64_t>(rows.size());
    }
  }
  return report;
}

}  // namespace moe
