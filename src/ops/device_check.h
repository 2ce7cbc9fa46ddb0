// The device rule of the ops (internal): CPU tensors always, CUDA tensors with the CUDA tier; any
// other device, or CUDA without the tier, is an error that names the op, the argument and the device.
#pragma once

#include <ATen/core/Tensor.h>

#include "moe/core/build_config.h"
#include "moe/core/error.h"

namespace moe::detail {

inline void check_op_device(const at::Tensor& t, const char* op, const char* name) {
  if (t.is_cuda()) {
    MOE_CHECK(MOE_WITH_CUDA, op, ": moe was built without CUDA support; ", name, " is on ", t.device());
    return;
  }
  MOE_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU or CUDA tensor, got ", t.device());
}

}  // namespace moe::detail
