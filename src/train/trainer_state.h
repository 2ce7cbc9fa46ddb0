// Private to src/train: the state a Trainer carries between its member functions (trainer.cpp: set-up,
// the loop, one update, validation, evaluation; trainer_checkpoint.cpp: writing and resuming).
#pragma once

#include <ATen/Device.h>

#include <limits>
#include <map>
#include <memory>
#include <string>

#include "moe/core/error.h"
#include "moe/core/logging.h"
#include "moe/data/prefetch.h"
#include "moe/parallel/communicator.h"
#include "moe/parallel/grad_sync.h"
#include "moe/parallel/process_groups.h"
#include "moe/train/optimizer.h"
#include "moe/train/report.h"
#include "moe/train/trainer.h"

namespace moe {

/// log_info of the arguments' concatenation.
template <typename... Args>
void info(const Args&... args) {
  log_info(detail::concat(args...));
}

struct Trainer::State {
  at::Device device{at::kCPU};
  bool bf16 = false, tty = false;
  std::shared_ptr<Communicator> world;  ///< the run's processes (a world of one for one process)
  ParallelGroups groups;
  std::unique_ptr<GradientSynchronizer> sync;
  std::unique_ptr<Optimizer> optimizer;
  std::unique_ptr<BatchPrefetcher> batcher;  ///< the TokenBatcher's stream, prepared ahead
  std::unique_ptr<MetricsLog> metrics;
  MoEStatsWindow stats;
  VariantSpec variant;
  double best_valid = std::numeric_limits<double>::infinity();
  int64_t best_step = -1;                       ///< the step whose model best.moeckpt holds
  int64_t validations_without_improvement = 0;  ///< for train.patience (early stopping)
  std::string stop_reason;                      ///< why the last train() ended (results.json)
  int64_t skipped_in_a_row = 0, skipped_total = 0;
  double elapsed_before = 0;  ///< seconds trained before this process (resumed runs)
  double session_seconds = 0;
  std::map<std::string, double> last_experts_per_token;
  int64_t last_checkpoint_step = -1, last_validation_step = -1;
  bool writer() const { return world->rank() == 0; }  ///< logs, metrics, heatmaps, results, the shared file
};

}  // namespace moe
