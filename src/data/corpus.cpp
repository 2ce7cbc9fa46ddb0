// Parallel corpus reading (see moe/data/corpus.h).
#include "moe/data/corpus.h"

#include <filesystem>
#include <fstream>

#include "moe/core/error.h"

namespace moe {
namespace fs = std::filesystem;

bool is_valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

std::vector<std::string> read_text_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MOE_CHECK(in.good(), "cannot open '", path, "'");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    MOE_CHECK(is_valid_utf8(line), "'", path, "' line ", lines.size() + 1, " is not valid UTF-8");
    lines.push_back(std::move(line));
  }
  MOE_CHECK(!lines.empty(), "'", path, "' is empty");
  return lines;
}

ParallelText read_parallel(const std::string& root, const std::string& source_lang, const std::string& target_lang,
                           const std::string& split, const CorpusReadOptions& options) {
  MOE_CHECK(options.max_line_bytes >= 0, "CorpusReadOptions.max_line_bytes must be >= 0, got ", options.max_line_bytes);
  std::string folder;
  for (const auto& candidate : {fs::path(root) / (source_lang + "-" + target_lang),
                                fs::path(root) / (target_lang + "-" + source_lang), fs::path(root)}) {
    if (fs::exists(candidate / (split + "." + source_lang)) || fs::exists(candidate / (split + "." + target_lang))) {
      folder = candidate.string();
      break;
    }
  }
  MOE_CHECK(!folder.empty(), "corpus '", root, "' has no split '", split, "' for ", source_lang, "-", target_lang,
            " (looked for ", split, ".", source_lang, " in ", source_lang, "-", target_lang, "/, ", target_lang, "-",
            source_lang, "/ and the root)");
  const std::string src_path = folder + "/" + split + "." + source_lang;
  const std::string tgt_path = folder + "/" + split + "." + target_lang;
  MOE_CHECK(fs::exists(src_path), "missing file '", src_path, "'");
  MOE_CHECK(fs::exists(tgt_path), "missing file '", tgt_path, "'");
  auto src = read_text_lines(src_path);
  auto tgt = read_text_lines(tgt_path);
  MOE_CHECK(src.size() == tgt.size(), "'", src_path, "' has ", src.size(), " lines but '", tgt_path, "' has ",
            tgt.size());
  ParallelText out{source_lang, target_lang, split, {}, {}, 0};
  for (size_t i = 0; i < src.size(); ++i) {
    // A blank or NUL-bearing line is a broken corpus (a misaligned file, a binary one), not a pair.
    for (const auto* side : {&src, &tgt}) {
      const auto& line = (*side)[i];
      const auto& path = side == &src ? src_path : tgt_path;
      MOE_CHECK(line.find('\0') == std::string::npos, "'", path, "' line ", i + 1, " contains a NUL byte");
      MOE_CHECK(line.find_first_not_of(" \t\r\f\v") != std::string::npos, "'", path, "' line ", i + 1,
                " is blank; every line of a parallel corpus must hold a segment");
    }
    if (options.max_line_bytes > 0 && (static_cast<int64_t>(src[i].size()) > options.max_line_bytes ||
                                       static_cast<int64_t>(tgt[i].size()) > options.max_line_bytes)) {
      ++out.skipped_long;
      continue;
    }
    out.source.push_back(std::move(src[i]));
    out.target.push_back(std::move(tgt[i]));
  }
  return out;
}

}  // namespace moe
