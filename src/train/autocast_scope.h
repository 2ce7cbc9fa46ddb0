// Private to src/train: bf16 autocast on CUDA for the span of a scope (the trainer's forward passes).
#pragma once

#include <ATen/autocast_mode.h>

namespace moe {

// bf16 autocast on CUDA: matmuls in bf16, reductions and softmax in fp32; restored on exit.
struct AutocastScope {
  explicit AutocastScope(bool on) : on_(on) {
    if (!on_) return;
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCUDA, false);
  }
  bool on_;
};

}  // namespace moe
