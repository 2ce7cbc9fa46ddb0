// Inverse square-root learning-rate schedule (see moe/train/schedule.h).
#include "moe/train/schedule.h"

#include <cmath>

#include "moe/core/error.h"

namespace moe {

double InverseSqrtSchedule::at(int64_t step) const {
  if (step <= 0) return warmup_init_lr;
  if (step < warmup)
    return warmup_init_lr + (lr - warmup_init_lr) * static_cast<double>(step) / static_cast<double>(warmup);
  return lr * std::sqrt(static_cast<double>(warmup) / static_cast<double>(step));
}

void InverseSqrtSchedule::validate(const std::string& owner) const {
  MOE_CHECK(lr > 0, owner, ".lr must be > 0, got ", lr);
  MOE_CHECK(warmup >= 1, owner, ".warmup must be >= 1, got ", warmup);
  MOE_CHECK(warmup_init_lr >= 0 && warmup_init_lr <= lr, owner, ".warmup_init_lr must be in [0, lr=", lr, "], got ",
            warmup_init_lr);
}

}  // namespace moe
