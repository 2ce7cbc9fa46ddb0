// The process-wide stop request and the programs' signal handlers (see moe/core/stop_request.h).
#include "moe/core/stop_request.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>

namespace moe {
namespace {

std::atomic<int> g_stop{-1};
static_assert(std::atomic<int>::is_always_lock_free, "the stop flag must be lock-free to be set from a handler");

void on_signal(int sig) {
  int expected = -1;
  if (!g_stop.compare_exchange_strong(expected, sig)) ::_exit(128 + sig);  // the second signal: now
}

}  // namespace

void request_stop(int signal) {
  int expected = -1;
  g_stop.compare_exchange_strong(expected, signal);
}

int stop_requested() { return g_stop.load(); }

void clear_stop_request() { g_stop.store(-1); }

std::string stop_reason(int signal) {
  switch (signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case 0: return "a stop request";
    default: return "signal " + std::to_string(signal);
  }
}

void install_stop_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &action, nullptr);
}

}  // namespace moe
