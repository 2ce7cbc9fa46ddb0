// Local multi-process launcher (see moe/parallel/launcher.h).
#include "moe/parallel/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <sstream>
#include <thread>

#include "moe/core/error.h"

extern char** environ;

namespace moe {
namespace {

// SIGINT, SIGTERM, SIGHUP, SIGQUIT to the launcher (Ctrl-C, scancel, a closed terminal) go on to
// every rank: the ranks run in process groups of their own, so the terminal's signal reaches only the
// launcher, which passes the same signal on (a trainer then checkpoints and exits). A second one
// is passed on too (the trainer then exits at once). If the launcher itself is killed, the kernel
// kills the ranks (PR_SET_PDEATHSIG), so none is left running.
constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
volatile std::sig_atomic_t g_signal = 0, g_signals = 0;
void on_signal(int sig) {
  g_signal = sig;
  g_signals = g_signals + 1;
}

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
  MOE_CHECK(o.nproc >= 1 && o.nproc <= kMaxLocalProcesses, "LaunchOptions.nproc must be in [1, ", kMaxLocalProcesses,
            "] (processes on this machine), got ", o.nproc);
  MOE_CHECK(o.timeout_s >= 0, "LaunchOptions.timeout_s must be >= 0, got ", o.timeout_s);
  MOE_CHECK(o.grace_s >= 0 && o.signal_grace_s >= 0, "LaunchOptions.grace_s and signal_grace_s must be >= 0");
  const int port = o.master_port > 0 ? o.master_port : find_free_port();
  std::vector<pid_t> pids(static_cast<size_t>(o.nproc), -1);
  LaunchResult result;
  result.status.assign(static_cast<size_t>(o.nproc), -1);
  std::vector<bool> running(static_cast<size_t>(o.nproc), false);

  // Everything the children need is built before fork: the parent may have threads (LibTorch's),
  // and after fork only async-signal-safe calls are safe.
  std::vector<std::vector<std::string>> envs(static_cast<size_t>(o.nproc));
  for (int r = 0; r < o.nproc; ++r) {
    std::map<std::string, std::string> vars;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      const std::string kv(*e);
      const auto eq = kv.find('=');
      if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    vars["RANK"] = std::to_string(r);
    vars["LOCAL_RANK"] = std::to_string(r);
    vars["WORLD_SIZE"] = std::to_string(o.nproc);
    vars["LOCAL_WORLD_SIZE"] = std::to_string(o.nproc);
    vars["MASTER_ADDR"] = o.master_addr;
    vars["MASTER_PORT"] = std::to_string(port);
    for (const auto& [k, v] : o.env) vars[k] = v;
    if (static_cast<size_t>(r) < o.rank_env.size())
      for (const auto& [k, v] : o.rank_env[static_cast<size_t>(r)]) vars[k] = v;
    for (const auto& [k, v] : vars) envs[static_cast<size_t>(r)].push_back(k + "=" + v);
  }
  std::vector<char*> argv;
  for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::string cannot_run = "moe-launch: cannot run " + command[0] + "\n";

  // The handlers are in place before the first fork: a signal while forking stops the forking.
  g_signal = 0;
  g_signals = 0;
  struct sigaction action {};
  struct sigaction old[std::size(kForwarded)] = {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  for (size_t i = 0; i < std::size(kForwarded); ++i) ::sigaction(kForwarded[i], &action, &old[i]);
  auto restore_handlers = [&] {
    for (size_t i = 0; i < std::size(kForwarded); ++i) ::sigaction(kForwarded[i], &old[i], nullptr);
  };
  const pid_t launcher = ::getpid();
  int started = 0;

  for (int r = 0; r < o.nproc && g_signal == 0; ++r) {
    std::vector<char*> envp;
    for (auto& kv : envs[static_cast<size_t>(r)]) envp.push_back(kv.data());
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int err = errno;
      for (int q = 0; q < r; ++q) {
        ::kill(-pids[static_cast<size_t>(q)], SIGKILL);
        ::waitpid(pids[static_cast<size_t>(q)], nullptr, 0);
      }
      restore_handlers();
      MOE_THROW("launch_local: fork failed for rank ", r, " of ", o.nproc, ": ", std::strerror(err));
    }
    if (pid == 0) {
      ::setpgid(0, 0);                     // its own process group: stopping a rank stops whatever it started too
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the launcher killed: so is the rank
      if (::getppid() != launcher) ::_exit(128 + SIGKILL);  // it died before prctl
      for (int sig : kForwarded) ::signal(sig, SIG_DFL);
      ::execvpe(argv[0], argv.data(), envp.data());
      const ssize_t ignored = ::write(STDERR_FILENO, cannot_run.data(), cannot_run.size());
      (void)ignored;
      ::_exit(127);
    }
    ::setpgid(pid, pid);  // also here, so the group exists before any signal is sent
    pids[static_cast<size_t>(r)] = pid;
    running[static_cast<size_t>(r)] = true;
    ++started;
  }

  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  int alive = started;
  for (int r = started; r < o.nproc; ++r) result.status[static_cast<size_t>(r)] = 128 + g_signal;  // never started
  bool stopping = false;
  double grace = o.grace_s;
  int forwarded = 0;
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
    if (g_signals > forwarded) {  // pass every signal on, the second too (the ranks then exit at once)
      forwarded = g_signals;
      if (!stopping) {
        result.exit_code = 128 + g_signal;
        stopping = true;
        stop_at = now;
        grace = o.signal_grace_s;  // time for the ranks to finish an update and write a checkpoint
      }
      stop_others(g_signal);
    }
    if (!stopping && o.timeout_s > 0 && std::chrono::duration<double>(now - start).count() > o.timeout_s) {
      result.timed_out = true;
      result.exit_code = 124;
      stopping = true;
      stop_at = now;
      stop_others(SIGTERM);
    }
    if (stopping && std::chrono::duration<double>(now - stop_at).count() > grace) stop_others(SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  restore_handlers();
  if (started < o.nproc && result.exit_code == 0) result.exit_code = 128 + g_signal;
  std::ostringstream s;
  for (int r = 0; r < o.nproc; ++r) {
    const int st = result.status[static_cast<size_t>(r)];
    s << "rank " << r << ": "
      << (st >= 128 ? "killed by signal " + std::to_string(st - 128) : "exit " + std::to_string(st))
      << (stopping && r != result.first_failed_rank && st != 0 ? " (stopped by the launcher)" : "") << "\n";
  }
  if (result.timed_out) s << "timed out after " << o.timeout_s << " s\n";
  result.summary = s.str();
  return result;
}

}  // namespace moe
