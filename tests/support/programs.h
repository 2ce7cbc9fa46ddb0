// For integration tests that run the built programs: a shell command's exit code and output, and
// whether this machine can build the default (gettext) corpus the tiny config trains on.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>

namespace moe::testing {

/// Runs a shell command; returns (exit code, stdout+stderr).
inline std::pair<int, std::string> run(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), pipe)) output.append(buf, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

/// "" when the default corpus can be built here: German and French gettext catalogs (>= 10 each,
/// GettextCorpusOptions::min_catalogs) and msgunfmt; else why not. Machines whose image strips
/// /usr/share/locale skip the tests that need it, as GettextCorpusTest.MachineCatalogs does.
inline std::string default_corpus_missing() {
  namespace fs = std::filesystem;
  if (std::system("command -v msgunfmt >/dev/null 2>&1") != 0) return "msgunfmt is not installed";
  for (const char* lang : {"de", "fr"}) {
    const fs::path dir = fs::path("/usr/share/locale") / lang / "LC_MESSAGES";
    int catalogs = 0;
    std::error_code ec;
    if (fs::is_directory(dir, ec))
      for (const auto& e : fs::directory_iterator(dir, ec)) catalogs += e.path().extension() == ".mo";
    if (catalogs < 10) return std::string("only ") + std::to_string(catalogs) + " gettext catalogs in " + dir.string();
  }
  return "";
}

}  // namespace moe::testing
