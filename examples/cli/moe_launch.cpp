// moe-launch: runs N copies of a command on this machine for a multi-process run, torchrun-style.
//   moe-launch --nproc 4 [--master-port P] [--master-addr A] [--timeout S] -- moe-train --config c.toml
// Each process gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT. When one
// process fails, the others are stopped and moe-launch exits with the failing code (124 on timeout).
// Several machines: see docs/expert-parallel.md (Slurm and mpirun set the variables instead).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "moe/core/error.h"
#include "moe/parallel/launcher.h"
#include "program_errors.h"

int main(int argc, char** argv) {
  // Everything after "--" is the command, untouched by the option parser.
  std::vector<std::string> command;
  int own_argc = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--") {
      own_argc = i;
      for (int j = i + 1; j < argc; ++j) command.emplace_back(argv[j]);
      break;
    }
  }
  CLI::App app{"Start N processes of a multi-process moe run on this machine"};
  moe::LaunchOptions options;
  app.add_option("--nproc,-n", options.nproc, "processes to start (the world size on this machine)")->required();
  app.add_option("--master-addr", options.master_addr, "address of rank 0's rendezvous store");
  app.add_option("--master-port", options.master_port, "port of the rendezvous store (0: a free one)");
  app.add_option("--timeout", options.timeout_s, "stop every process after this many seconds (0: no limit)");
  app.add_option("--grace", options.grace_s, "seconds between SIGTERM and SIGKILL when stopping the others");
  app.add_option("--signal-grace", options.signal_grace_s,
                 "seconds the ranks get to checkpoint after a signal is passed on, before SIGKILL");
  app.footer("Usage: moe-launch --nproc N [options] -- COMMAND [ARGS...]");
  try {
    app.parse(own_argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    MOE_CHECK(!command.empty(), "no command: put it after '--' (moe-launch --nproc 2 -- moe-train ...)");
    auto result = moe::launch_local(command, options);
    if (result.exit_code != 0) {
      std::fprintf(stderr, "moe-launch: %s%s", result.timed_out ? "timed out; " : "", result.summary.c_str());
    }
    return result.exit_code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe-launch: error: %s\n", moe::cli::error_line(e).c_str());
    return 1;
  }
}
