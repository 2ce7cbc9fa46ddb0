// moe-train under moe-launch: two processes over Gloo with the experts sharded over both (expert
// parallelism 2, data parallelism 2) follow the single-process run with the same global batch (one
// process with update_freq 2 sees exactly the micro-batches the two ranks see) for 50 updates, and
// the sharded checkpoint they write loads into one process (moe-translate).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "moe/core/build_config.h"
#include "scratch.h"
#include "test_paths.h"

namespace {

namespace fs = std::filesystem;

std::pair<int, std::string> run(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  char buf[4096];
  while (std::fgets(buf, sizeof(buf), pipe) != nullptr) output += buf;
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// Per-step losses ("last_loss" of each train record) from a run's metrics.jsonl.
std::vector<double> losses(const fs::path& run_dir) {
  std::ifstream in(run_dir / "metrics.jsonl");
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"type\": \"train\"") == std::string::npos) continue;
    const auto pos = line.find("\"last_loss\": ");
    if (pos != std::string::npos) out.push_back(std::strtod(line.c_str() + pos + 13, nullptr));
  }
  return out;
}

std::string corpus_missing() {
  if (std::system("command -v msgunfmt >/dev/null 2>&1") != 0) return "msgunfmt is not installed";
  for (const char* lang : {"de", "fr"}) {
    int n = 0;
    std::error_code ec;
    const fs::path dir = fs::path("/usr/share/locale") / lang / "LC_MESSAGES";
    if (fs::is_directory(dir, ec))
      for (const auto& e : fs::directory_iterator(dir, ec)) n += e.path().extension() == ".mo";
    if (n < 10) return "only " + std::to_string(n) + " gettext catalogs in " + dir.string();
  }
  return "";
}

TEST(ParallelTraining, TwoRanksWithShardedExpertsFollowOneRankFor50Updates) {
  if (!MOE_WITH_GLOO) GTEST_SKIP() << "moe was built without Gloo";
  const auto missing = corpus_missing();
  if (!missing.empty()) GTEST_SKIP() << "default corpus unavailable: " << missing;
  const std::string bin = moe::testing::kBinDir;
  const auto cache = moe::testing::scratch("parallel_cache");
  const auto one = moe::testing::scratch("parallel_one"), two = moe::testing::scratch("parallel_two");
  // Switch routing and no dropout: nothing random in training, so the two runs can be compared.
  const std::string common = " --config " + std::string(moe::testing::kSourceDir) +
                             "/configs/tiny.toml --no-eval --moe.variant switch --model.dropout 0"
                             " --train.max_steps 50 --train.log_every 1 --train.validate_every 50"
                             " --train.checkpoint_every 50 --train.threads 1 --log_level warn --data.cache_dir " +
                             cache.string();
  auto single = run(bin + "/moe-train" + common + " --run_dir " + one.string() + " --train.update_freq 2");
  ASSERT_EQ(single.first, 0) << single.second;
  auto multi = run(bin + "/moe-launch --nproc 2 --timeout 600 -- " + bin + "/moe-train" + common + " --run_dir " +
                   two.string() +
                   " --train.update_freq 1 --parallel.backend gloo --parallel.expert_parallel_size 2"
                   " --parallel.timeout_s 60");
  ASSERT_EQ(multi.first, 0) << multi.second;
  const auto a = losses(one), b = losses(two);
  ASSERT_EQ(a.size(), 50u);
  ASSERT_EQ(b.size(), 50u) << multi.second;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  EXPECT_LT(worst, 1e-3) << "first step: " << a[0] << " vs " << b[0] << "; last: " << a.back() << " vs " << b.back();
  EXPECT_GT(a.front() - a.back(), 0.5) << "the loss did not fall";
  std::cout << "[ parallel ] 50 updates, worst per-step loss difference " << worst << " (" << a.front() << " -> "
            << a.back() << ")\n";
  // The sharded checkpoint: one shared file and one expert shard per expert-parallel rank; it
  // loads into one process with every expert.
  EXPECT_TRUE(fs::exists(two / "checkpoint-50.moeckpt"));
  EXPECT_TRUE(fs::exists(two / "checkpoint-50.experts-0-of-2.moeckpt"));
  EXPECT_TRUE(fs::exists(two / "checkpoint-50.experts-1-of-2.moeckpt"));
  auto translated = run("echo 'Open the file' | " + bin + "/moe-translate --checkpoint " +
                        (two / "checkpoint-50.moeckpt").string() + " --target de");
  EXPECT_EQ(translated.first, 0) << translated.second;
  EXPECT_FALSE(translated.second.empty());
}

}  // namespace
