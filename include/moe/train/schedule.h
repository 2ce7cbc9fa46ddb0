// Learning-rate schedule: fairseq's inverse_sqrt (Vaswani et al. 2017, §5.3): linear warmup from
// warmup_init_lr to lr over `warmup` updates, then lr · sqrt(warmup / step).
#pragma once

#include <cstdint>
#include <string>

namespace moe {

struct InverseSqrtSchedule {
  double lr = 5e-4;              ///< peak learning rate (> 0)
  int64_t warmup = 4000;         ///< warmup updates (>= 1)
  double warmup_init_lr = 1e-7;  ///< learning rate at step 0 (>= 0, <= lr)
  /// The learning rate of update `step` (1-based; step 0 gives warmup_init_lr).
  double at(int64_t step) const;
  void validate(const std::string& owner = "InverseSqrtSchedule") const;
};

}  // namespace moe
