// Shared by the command-line programs: how an error becomes the one line a program prints. LibTorch's
// own errors carry a C++ stack trace after their message ("Exception raised from ...", "frame #0:
// ..."); programs print the message alone, on one line, with any overlong value cut.
#pragma once

#include <c10/util/Exception.h>

#include <chrono>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include "moe/core/option_fields.h"

namespace moe::cli {

/// The message of `e` on one line: no stack trace, control characters shown as escapes, at most
/// about 2000 bytes (the rest counted).
inline std::string error_line(const std::exception& e) {
  std::string text;
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) {
    text = c10->what_without_backtrace();
  } else {
    text = e.what();
  }
  for (const char* marker : {"\nException raised from", "\nframe #", "Exception raised from "}) {
    const auto at = text.find(marker);
    if (at != std::string::npos) text.resize(at);
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  std::string flat;
  for (char ch : text) flat += ch == '\n' ? ' ' : ch;
  return printable(flat, 2000);
}

/// Appends "<time> [error] <line>" to run_dir/train.log when the run folder exists (a run's fatal
/// error belongs to its log, not only to the terminal).
inline void append_to_run_log(const std::string& run_dir, const std::string& line) {
  std::error_code ec;
  if (run_dir.empty() || !std::filesystem::is_directory(run_dir, ec)) return;
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", std::localtime(&now));
  std::ofstream(std::filesystem::path(run_dir) / "train.log", std::ios::app)
      << "[" << stamp << "] [error] " << line << "\n";
}

}  // namespace moe::cli
