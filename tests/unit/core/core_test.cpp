// core/: the registry helper, error messages, log-level parsing and build information.
#include <gtest/gtest.h>

#include "moe/core/build_info.h"
#include "moe/core/error.h"
#include "moe/core/hash.h"
#include "moe/core/logging.h"
#include "moe/core/option_fields.h"
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

TEST(HashTest, StandardFnv1a64Vectors) {
  // The published FNV-1a 64 test vectors (Fowler/Noll/Vo): the empty string is the offset basis.
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ULL);
  // Chunks hash like the whole.
  const std::string text = "foobar";
  EXPECT_EQ(fnv1a64(fnv1a64(kFnv1a64Offset, text.data(), 3), text.data() + 3, 3), fnv1a64(text));
}

TEST(PrintableTest, CutsLongValuesAndNamesOddBytes) {
  EXPECT_EQ(printable("plain"), "plain");
  EXPECT_EQ(printable(std::string(1000, 'x'), 10), "xxxxxxxxxx… (990 more bytes)");
  EXPECT_EQ(printable("\xEF\xBB\xBFkey"), "<BOM>key");
  EXPECT_EQ(printable(std::string("a\0b\x01\xff", 5)), "a\\x00b\\x01\\xFF");
  EXPECT_EQ(printable("grüß"), "grüß");  // valid UTF-8 is kept
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
