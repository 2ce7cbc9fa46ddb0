// Error checking for kernel launchers. Launchers return cudaError_t so that the caller (the glue in
// src/ops, which knows LibTorch) turns a failure into an exception; kernels/ never aborts.
#pragma once
#include <cuda_runtime.h>

#define MOE_CUDA_RETURN_IF_ERROR(expr)        \
  do {                                        \
    cudaError_t moe_err_ = (expr);            \
    if (moe_err_ != cudaSuccess) return moe_err_; \
  } while (0)
