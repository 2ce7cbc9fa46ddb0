// The optimizer of a run: AdamW (decoupled weight decay, as fairseq's Adam) under the inverse-sqrt
// schedule with linear warmup, and its state by parameter name, so that a checkpoint's moments
// load into any world or expert-parallel size (each process takes the entries of the parameters it
// holds; expert entries are named by global expert id).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "moe/train/config.h"
#include "moe/train/schedule.h"
#include "moe/train/sharded_state.h"

namespace torch::optim {
class AdamW;
}

namespace moe {

class Optimizer {
 public:
  /// named_parameters: the model's (name, parameter) pairs; the [train] settings give the betas,
  /// epsilon, weight decay and the schedule.
  Optimizer(const std::vector<std::pair<std::string, at::Tensor>>& named_parameters, const TrainingConfig& config);
  ~Optimizer();

  void zero_grad();
  /// One update with the scheduled learning rate of update number `update` (1-based); returns it.
  double step(int64_t update);
  double lr_at(int64_t update) const { return schedule_.at(update); }

  /// "optimizer.<name>.exp_avg", ".exp_avg_sq" and ".step" of every parameter that has state.
  NamedState state() const;
  /// Restores the entries of this process's parameters from `state` (any layout that names them);
  /// throws moe::Error naming `source` when a parameter's entries are incomplete.
  void load_state(const NamedState& state, const std::string& source);
  /// The wrapped LibTorch optimizer (to convert checkpoints of format 1).
  torch::optim::AdamW& adamw() { return *adam_; }

 private:
  std::vector<std::pair<std::string, at::Tensor>> named_;
  std::unique_ptr<torch::optim::AdamW> adam_;
  InverseSqrtSchedule schedule_;
};

}  // namespace moe
