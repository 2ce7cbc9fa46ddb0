// The batch prefetcher (see moe/data/prefetch.h).
#include "moe/data/prefetch.h"

#include <ATen/ATen.h>
#include <pthread.h>
#include <signal.h>

#include "moe/core/error.h"

namespace moe {

void PrefetchOptions::validate() const {
  MOE_CHECK(depth >= 0 && depth <= 64, "data.prefetch must be in [0, 64], got ", depth);
}

BatchPrefetcher::BatchPrefetcher(std::unique_ptr<TokenBatcher> batcher, PrefetchOptions options)
    : batcher_(std::move(batcher)), options_(options) {
  MOE_CHECK(batcher_ != nullptr, "BatchPrefetcher: no batcher");
  options_.validate();
  consumed_ = batcher_->state();
  start();
}

BatchPrefetcher::~BatchPrefetcher() { stop(); }

BatchPrefetcher::Prepared BatchPrefetcher::draw() {
  Prepared p{batcher_->next(), {}};
  p.after = batcher_->state();
  if (options_.pin_memory) {
    for (auto* t : {&p.batch.source, &p.batch.target_input, &p.batch.target_output})  // what goes to the device
      *t = t->pin_memory();
  }
  return p;
}

void BatchPrefetcher::start() {
  if (options_.depth == 0) return;
  stopping_ = false;
  // The trainer's stop signals (SIGINT, SIGTERM, SIGHUP) belong to the training thread: the new
  // thread starts with them blocked (it inherits the mask in force when it is created).
  sigset_t stop_signals, previous;
  sigemptyset(&stop_signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop_signals, sig);
  pthread_sigmask(SIG_BLOCK, &stop_signals, &previous);
  thread_ = std::thread([this] { run(); });
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

void BatchPrefetcher::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void BatchPrefetcher::run() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || static_cast<int64_t>(queue_.size()) < options_.depth; });
      if (stopping_) return;
    }
    try {
      auto prepared = draw();  // outside the lock: the caller takes ready batches meanwhile
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(prepared));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
      changed_.notify_all();
      return;
    }
    changed_.notify_all();
  }
}

Batch BatchPrefetcher::next() {
  if (options_.depth == 0 || !thread_.joinable()) {
    if (error_) std::rethrow_exception(error_);
    auto p = draw();
    consumed_ = p.after;
    return std::move(p.batch);
  }
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !queue_.empty() || error_; });
  if (queue_.empty()) std::rethrow_exception(error_);
  auto p = std::move(queue_.front());
  queue_.pop_front();
  lock.unlock();
  changed_.notify_all();
  consumed_ = p.after;
  return std::move(p.batch);
}

void BatchPrefetcher::restore(const TokenBatcher::State& state) {
  stop();
  queue_.clear();
  error_ = nullptr;
  try {
    batcher_->restore(state);
  } catch (...) {
    error_ = std::current_exception();  // a later next() throws it too rather than wait for a thread
    throw;
  }
  consumed_ = batcher_->state();
  start();
}

}  // namespace moe
