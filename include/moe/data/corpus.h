// Parallel corpora on disk. Two layouts occur (both in shared/data):
//   pair folders      <root>/<src>-<tgt>/{train,valid,test}.<lang>   (e.g. mafand-mt, wmt-news)
//   multi-way folders <root>/{train,valid,test}.<lang>               (e.g. multi30k)
// Reading is strict: a missing split, an empty file, a line-count mismatch, invalid UTF-8, a blank
// line or a NUL byte is an error naming the file (and line); CRLF is normalised; over-long lines are
// skipped (both sides) and counted.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct ParallelText {
  std::string source_lang, target_lang, split;
  std::vector<std::string> source, target;  ///< aligned, one segment each
  int64_t skipped_long = 0;                 ///< pairs dropped for exceeding max_line_bytes
};

struct CorpusReadOptions {
  int64_t max_line_bytes = 1024;  ///< longer pairs are skipped and counted (0 = no limit)
};

/// Reads one direction of one split. Finds <root>/<src>-<tgt>/, then <root>/<tgt>-<src>/, then
/// <root>/ itself (multi-way). Throws moe::Error naming the file and line for any problem.
ParallelText read_parallel(const std::string& root, const std::string& source_lang, const std::string& target_lang,
                           const std::string& split, const CorpusReadOptions& options = {});

/// Reads a text file as lines: UTF-8 checked (error names file and line), CRLF normalised, trailing
/// newline optional; an empty file is an error.
std::vector<std::string> read_text_lines(const std::string& path);

/// True when `text` is valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(const std::string& text);

}  // namespace moe
