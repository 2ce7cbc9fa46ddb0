// The optimizer of a run: AdamW (decoupled weight decay, as fairseq's Adam) under the inverse-sqrt
// schedule with linear warmup, and its state by parameter name, so that a checkpoint's moments
// load into any world or expert-parallel size (each process takes the entries of the parameters it
// holds; expert entries are named by global expert id). The update is LibTorch's fused multi-tensor
// AdamW kernel (at::_fused_adamw_: one pass over all parameters of a device and dtype, on CUDA and
// on the CPU), the same kernel torch.optim.AdamW(fused=True) runs.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "moe/train/config.h"
#include "moe/train/schedule.h"
#include "moe/train/sharded_state.h"

namespace moe {

class Optimizer {
 public:
  /// named_parameters: the model's (name, parameter) pairs; the [train] settings give the betas,
  /// epsilon, weight decay and the schedule.
  Optimizer(const std::vector<std::pair<std::string, at::Tensor>>& named_parameters, const TrainingConfig& config);

  /// Sets every gradient to undefined (a parameter no micro-batch touches keeps no gradient and is
  /// not updated).
  void zero_grad();
  /// One update with the scheduled learning rate of update number `update` (1-based) for every
  /// parameter with a gradient; returns the learning rate.
  double step(int64_t update);
  double lr_at(int64_t update) const { return schedule_.at(update); }

  /// "optimizer.<name>.exp_avg", ".exp_avg_sq" (the parameter's shape and dtype) and ".step" ([]
  /// int64) of every parameter that has state.
  NamedState state() const;
  /// Restores the entries of this process's parameters from `state` (any layout that names them);
  /// throws moe::Error naming `source` when a parameter's entries are incomplete.
  void load_state(const NamedState& state, const std::string& source);

 private:
  struct Moments {
    at::Tensor exp_avg, exp_avg_sq;  ///< like the parameter
    at::Tensor step;                 ///< [] float32 on the parameter's device (the fused kernel's form)
  };
  std::vector<std::pair<std::string, at::Tensor>> named_;
  std::vector<Moments> moments_;  ///< parallel to named_; undefined until the parameter's first update
  InverseSqrtSchedule schedule_;
  double beta1_, beta2_, eps_, weight_decay_;
};

}  // namespace moe
