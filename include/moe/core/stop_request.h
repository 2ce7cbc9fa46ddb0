// A request to stop a run cleanly, as the programs' SIGINT, SIGTERM and SIGHUP handlers make it: the
// trainer finishes the update in progress, writes a checkpoint, says so, and throws Interrupted; the
// program exits non-zero (128 + the signal). A second signal exits at once. The flag is process-wide
// and async-signal-safe; library code only reads it.
#pragma once

#include <string>

#include "moe/core/error.h"

namespace moe {

/// Thrown by a loop that stopped because a stop was requested (after saving what it had).
class Interrupted : public Error {
 public:
  Interrupted(const std::string& message, int signal) : Error(message), signal_(signal) {}
  int signal() const { return signal_; }  ///< the signal that asked, or 0 for request_stop(0)
  int exit_code() const { return 128 + signal_; }

 private:
  int signal_;
};

/// Asks for a stop (async-signal-safe). `signal` is reported back by stop_requested().
void request_stop(int signal);
/// -1 when no stop was requested, else the signal that asked (0 for a request made in code).
int stop_requested();
void clear_stop_request();
/// "SIGTERM", "SIGINT", "SIGHUP", "a stop request".
std::string stop_reason(int signal);
/// Installs the programs' handlers for SIGINT, SIGTERM and SIGHUP: the first signal requests a stop,
/// a second one exits the process at once with 128 + its number.
void install_stop_signal_handlers();

}  // namespace moe
