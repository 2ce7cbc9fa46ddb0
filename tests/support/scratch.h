// Scratch folders under the temporary directory, removed when the test program ends.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

namespace moe::testing {

inline std::vector<std::filesystem::path>& scratch_dirs() {
  static std::vector<std::filesystem::path> dirs;
  return dirs;
}

class ScratchCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    for (const auto& dir : scratch_dirs()) std::filesystem::remove_all(dir);
  }
};

/// A fresh, empty folder for this test program (pid) and `name`.
inline std::filesystem::path scratch(const std::string& name) {
  static const auto* const cleanup = ::testing::AddGlobalTestEnvironment(new ScratchCleanup);
  (void)cleanup;
  auto dir = std::filesystem::temp_directory_path() / ("moe_test_" + std::to_string(getpid()) + "_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  scratch_dirs().push_back(dir);
  return dir;
}

}  // namespace moe::testing
