// Batches prepared ahead: a host thread draws the TokenBatcher's stream into a bounded queue (in
// page-locked memory when the batches go to a CUDA device, so that the step's copies to the device
// do not block the host), while the caller's thread trains on the batches already there.
//
// The stream is exactly the batcher's: the same batches in the same order. state() is the batcher's
// state after the last batch the caller took (not after the batches waiting in the queue), so a
// checkpoint written from it resumes exactly where the caller was.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "moe/data/batching.h"

namespace moe {

struct PrefetchOptions {
  /// Batches prepared ahead. 0 = no thread: next() draws in the caller's thread. In [0, 64].
  int64_t depth = 4;
  /// Page-locked host tensors (for non-blocking copies to CUDA). Needs a CUDA device.
  bool pin_memory = false;
  void validate() const;
};

class BatchPrefetcher {
 public:
  BatchPrefetcher(std::unique_ptr<TokenBatcher> batcher, PrefetchOptions options);
  ~BatchPrefetcher();  ///< stops the thread (waiting for at most the batch it is drawing)
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  /// The stream's next batch (CPU tensors; page-locked with pin_memory). An error the thread met
  /// drawing it is thrown here, in the caller's thread.
  Batch next();
  /// The batcher's state after the last batch next() returned (the construction state before any).
  TokenBatcher::State state() const { return consumed_; }
  /// Drops the prepared batches and continues exactly where `state` was taken.
  void restore(const TokenBatcher::State& state);
  const PrefetchOptions& options() const { return options_; }

 private:
  struct Prepared {
    Batch batch;
    TokenBatcher::State after;  ///< the batcher's state after drawing it
  };
  Prepared draw();
  void start();
  void stop();
  void run();

  std::unique_ptr<TokenBatcher> batcher_;  ///< owned by the thread while it runs
  PrefetchOptions options_;
  TokenBatcher::State consumed_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Prepared> queue_;
  std::exception_ptr error_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace moe
