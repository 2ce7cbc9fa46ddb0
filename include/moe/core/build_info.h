// What this copy of moe was built with, for programs that need to know at run time.
#pragma once

#include <string>

namespace moe {

/// True when the CUDA tier (GPU dispatch/combine/expert compute) is compiled in.
bool built_with_cuda();
/// True when kernels/ was compiled with nvcc.
bool built_with_kernels();
/// "moe 0.1.0 (torch 2.11.0, CUDA tier off, kernels on)".
std::string build_summary();

}  // namespace moe
