// Starting the processes of a multi-process run on one machine (what moe-launch does, and what the
// multi-process tests use): N copies of a command, each with RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set (torchrun's conventions). Each runs in a process
// group of its own. When one process fails the others are stopped (SIGTERM to the group, then
// SIGKILL after a grace period), so a crash never leaves the rest waiting forever; an overall
// timeout stops all of them; SIGINT, SIGTERM, SIGHUP or SIGQUIT to the launcher is passed on to every
// rank (a trainer checkpoints and exits), and if the launcher is killed the ranks die with it
// (PR_SET_PDEATHSIG). No LibTorch here.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace moe {

/// At most this many processes on one machine (forking more exhausts the process table first).
inline constexpr int kMaxLocalProcesses = 256;

struct LaunchOptions {
  int nproc = 1;                          ///< processes to start, in [1, kMaxLocalProcesses]
  std::string master_addr = "127.0.0.1";  ///< where rank 0 serves the rendezvous store
  int master_port = 0;                    ///< 0 = a free port chosen here
  double timeout_s = 0;                   ///< stop everything after this long; 0 = no limit
  double grace_s = 5;                     ///< between SIGTERM and SIGKILL when stopping the others
  /// After passing a signal on (SIGINT, SIGTERM, SIGHUP, SIGQUIT to the launcher): how long the ranks
  /// may take to finish their update and checkpoint before SIGKILL.
  double signal_grace_s = 300;
  std::vector<std::pair<std::string, std::string>> env;  ///< extra variables for every process
  /// Per-rank extra variables (index = rank); may be shorter than nproc.
  std::vector<std::vector<std::pair<std::string, std::string>>> rank_env;
};

struct LaunchResult {
  /// 0 when every process exited 0; else the first failure's exit code (128 + signal when killed
  /// by a signal, 124 when the timeout stopped the run, 128 + signal when the launcher was
  /// interrupted).
  int exit_code = 0;
  bool timed_out = false;
  int first_failed_rank = -1;
  std::vector<int> status;  ///< per rank: exit code, or 128 + signal
  std::string
      summary;  ///< one line per rank: "rank 1: exit 3", "rank 0: killed by signal 15 (stopped by the launcher)"
};

/// Runs `command` (argv; command[0] is looked up in PATH) as `nproc` processes and waits for them.
/// Throws moe::Error for an empty command or nproc < 1.
LaunchResult launch_local(const std::vector<std::string>& command, const LaunchOptions& options);

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
int find_free_port();

}  // namespace moe
