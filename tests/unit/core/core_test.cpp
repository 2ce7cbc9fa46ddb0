// core/: the registry helper, error messages, log-level parsing and build information.
#include <gtest/gtest.h>

#include "moe/core/build_info.h"
#include "moe/core/error.h"
#include "moe/core/logging.h"
#include "moe/core/registry.h"

namespace moe {
namespace {

TEST(RegistryTest, AddGetAndErrors) {
  Registry<int> registry("widget");
  registry.add("b", 2);
  registry.add("a", 1);
  EXPECT_EQ(registry.get("a"), 1);
  EXPECT_TRUE(registry.contains("b"));
  EXPECT_EQ(registry.names(), (std::vector<std::string>{"a", "b"}));
  try {
    registry.get("c");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "unknown widget 'c'; known widgets: a, b");
  }
  EXPECT_THROW(registry.add("a", 3), Error);
  EXPECT_THROW(registry.add("", 3), Error);
}

TEST(CoreTest, CheckMacroFormatsItsMessage) {
  try {
    MOE_CHECK(1 + 1 == 3, "Options.field must be ", 3, ", got ", 2.5);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "Options.field must be 3, got 2.5");
  }
}

TEST(CoreTest, LogLevelsAndBuildInfo) {
  EXPECT_EQ(parse_log_level("debug"), LogLevel::kDebug);
  EXPECT_THROW(parse_log_level("loud"), Error);
  init_logging(LogLevel::kWarn, "", 3);
  log_info("not shown");
  init_logging(LogLevel::kWarn);
  EXPECT_NE(build_summary().find("torch"), std::string::npos);
  EXPECT_EQ(built_with_cuda(), build_summary().find("CUDA tier on") != std::string::npos);
}

}  // namespace
}  // namespace moe
