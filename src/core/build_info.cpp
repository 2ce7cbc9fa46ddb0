// Build information (see moe/core/build_info.h).
#include "moe/core/build_info.h"

#include <torch/version.h>

#include "moe/core/build_config.h"

namespace moe {

bool built_with_cuda() { return MOE_WITH_CUDA != 0; }
bool built_with_kernels() { return MOE_WITH_KERNELS != 0; }

std::string build_summary() {
  return std::string("moe ") + MOE_VERSION_STRING + " (torch " + TORCH_VERSION + ", CUDA tier " +
         (built_with_cuda() ? "on" : "off") + ", kernels " + (built_with_kernels() ? "on" : "off") +
         ")";
}

}  // namespace moe
