// Local multi-process launcher (see moe/parallel/launcher.h).
#include "moe/parallel/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

#include "moe/core/error.h"

namespace moe {
namespace {

// SIGINT/SIGTERM to the launcher (Ctrl-C, scancel) stop every rank: the ranks run in process groups
// of their own, so the terminal's signal reaches only the launcher, which passes it on.
volatile std::sig_atomic_t g_interrupted = 0;
void on_interrupt(int sig) { g_interrupted = sig; }

}  // namespace

int find_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  MOE_CHECK(fd >= 0, "find_free_port: socket() failed: ", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  const int err = errno;
  ::close(fd);
  MOE_CHECK(ok, "find_free_port: bind/getsockname on 127.0.0.1 failed: ", std::strerror(err));
  return ntohs(addr.sin_port);
}

LaunchResult launch_local(const std::vector<std::string>& command, const LaunchOptions& o) {
  MOE_CHECK(!command.empty(), "launch_local: the command is empty");
  MOE_CHECK(o.nproc >= 1, "LaunchOptions.nproc must be >= 1, got ", o.nproc);
  MOE_CHECK(o.timeout_s >= 0, "LaunchOptions.timeout_s must be >= 0, got ", o.timeout_s);
  const int port = o.master_port > 0 ? o.master_port : find_free_port();
  std::vector<pid_t> pids(static_cast<size_t>(o.nproc), -1);
  LaunchResult result;
  result.status.assign(static_cast<size_t>(o.nproc), -1);
  std::vector<bool> running(static_cast<size_t>(o.nproc), false);

  for (int r = 0; r < o.nproc; ++r) {
    const pid_t pid = ::fork();
    MOE_CHECK(pid >= 0, "launch_local: fork failed for rank ", r, ": ", std::strerror(errno));
    if (pid == 0) {
      ::setpgid(0, 0);  // its own process group: stopping a rank stops whatever it started too
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      for (const auto& [k, v] : o.env) ::setenv(k.c_str(), v.c_str(), 1);
      if (static_cast<size_t>(r) < o.rank_env.size())
        for (const auto& [k, v] : o.rank_env[static_cast<size_t>(r)]) ::setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> argv;
      for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      std::fprintf(stderr, "moe-launch: cannot run %s: %s\n", argv[0], std::strerror(errno));
      ::_exit(127);
    }
    ::setpgid(pid, pid);  // also here, so the group exists before any signal is sent
    pids[static_cast<size_t>(r)] = pid;
    running[static_cast<size_t>(r)] = true;
  }

  g_interrupted = 0;
  struct sigaction action {}, old_int{}, old_term{};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, &old_int);
  ::sigaction(SIGTERM, &action, &old_term);
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  int alive = o.nproc;
  bool stopping = false;
  clock::time_point stop_at;
  auto stop_others = [&](int sig) {
    for (int r = 0; r < o.nproc; ++r)
      if (running[static_cast<size_t>(r)]) ::kill(-pids[static_cast<size_t>(r)], sig);
  };
  while (alive > 0) {
    int wstatus = 0;
    const pid_t done = ::waitpid(-1, &wstatus, WNOHANG);
    if (done > 0) {
      for (int r = 0; r < o.nproc; ++r) {
        if (pids[static_cast<size_t>(r)] != done || !running[static_cast<size_t>(r)]) continue;
        running[static_cast<size_t>(r)] = false;
        --alive;
        const int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
        result.status[static_cast<size_t>(r)] = code;
        if (code != 0 && !stopping) {
          result.first_failed_rank = r;
          result.exit_code = code;
          stopping = true;
          stop_at = clock::now();
          stop_others(SIGTERM);
        }
      }
      continue;
    }
    const auto now = clock::now();
    if (!stopping && g_interrupted != 0) {
      result.exit_code = 128 + g_interrupted;
      stopping = true;
      stop_at = now;
      stop_others(SIGTERM);
    }
    if (!stopping && o.timeout_s > 0 && std::chrono::duration<double>(now - start).count() > o.timeout_s) {
      result.timed_out = true;
      result.exit_code = 124;
      stopping = true;
      stop_at = now;
      stop_others(SIGTERM);
    }
    if (stopping && std::chrono::duration<double>(now - stop_at).count() > o.grace_s) stop_others(SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  std::ostringstream s;
  for (int r = 0; r < o.nproc; ++r) {
    const int st = result.status[static_cast<size_t>(r)];
    s << "rank " << r << ": " << (st >= 128 ? "killed by signal " + std::to_string(st - 128) : "exit " + std::to_string(st))
      << (stopping && r != result.first_failed_rank && st != 0 ? " (stopped by the launcher)" : "") << "\n";
  }
  if (result.timed_out) s << "timed out after " << o.timeout_s << " s\n";
  result.summary = s.str();
  return result;
}

}  // namespace moe
