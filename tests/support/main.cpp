// GoogleTest main for moe's suites: tests named *_CUDA are filtered out when no GPU is present
// (PyTorch's C++ API test convention), and logging is quietened to warnings.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <string>

#include "moe/core/logging.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (!torch::cuda::is_available()) {
    std::string filter = ::testing::GTEST_FLAG(filter);
    filter += (filter.find('-') == std::string::npos ? "-" : ":");
    filter += "*_CUDA:*_CUDA/*:*/*_CUDA";
    ::testing::GTEST_FLAG(filter) = filter;
  }
  moe::init_logging(moe::LogLevel::kWarn);
  return RUN_ALL_TESTS();
}
