// For integration tests that run the built programs: a shell command's exit code and output, and
// whether this machine can build the default (gettext) corpus the tiny config trains on.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

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

/// Starts `argv` in the background with stdout and stderr going to `log`; returns its pid (-1 on
/// failure).
inline pid_t spawn(const std::vector<std::string>& argv, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

/// Waits up to `timeout_s` for `pid`; returns its exit code (128 + signal when killed), or -1 after
/// killing it when the time ran out.
inline int wait_for(pid_t pid, double timeout_s) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  int status = 0;
  while (std::chrono::steady_clock::now() < end) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

/// A file's whole text ("" when missing).
inline std::string slurp_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Whether any process's command line contains `marker` (pgrep -f; the pattern brackets its first
/// character so that the shell running pgrep, whose command line holds the pattern, never matches).
inline bool process_running(const std::string& marker) {
  const std::string pattern = "[" + marker.substr(0, 1) + "]" + marker.substr(1);
  return std::system(("pgrep -f -- '" + pattern + "' >/dev/null 2>&1").c_str()) == 0;
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
