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
#include <map>
#include <sstream>

#include "moe/core/build_config.h"
#include "programs.h"
#include "scratch.h"
#include "test_paths.h"

namespace {

namespace fs = std::filesystem;

using moe::testing::run;

// Per-step losses ("last_loss" of each train record) from a run's metrics.jsonl, by step.
std::map<int64_t, double> losses(const fs::path& run_dir) {
  std::ifstream in(run_dir / "metrics.jsonl");
  std::map<int64_t, double> out;
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"type\": \"train\"") == std::string::npos) continue;
    const auto pos = line.find("\"last_loss\": "), step = line.find("\"step\": ");
    if (pos != std::string::npos && step != std::string::npos)
      out[std::strtoll(line.c_str() + step + 8, nullptr, 10)] = std::strtod(line.c_str() + pos + 13, nullptr);
  }
  return out;
}

// Largest |a - b| over the steps both have, and how many that is.
std::pair<double, int> compare(const std::map<int64_t, double>& a, const std::map<int64_t, double>& b) {
  double worst = 0;
  int n = 0;
  for (const auto& [step, loss] : a) {
    auto it = b.find(step);
    if (it == b.end()) continue;
    worst = std::max(worst, std::abs(loss - it->second));
    ++n;
  }
  return {worst, n};
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The first number after `key` in a JSON text (e.g. the "bleu" of a direction's object).
double number_after(const std::string& json, const std::string& key) {
  auto pos = json.find(key);
  if (pos == std::string::npos) return -1;
  pos = json.find_first_of("-0123456789", json.find(':', pos));
  return std::strtod(json.c_str() + pos, nullptr);
}

TEST(ParallelTraining, TwoRanksWithShardedExpertsFollowOneRankFor50Updates) {
  if (!MOE_WITH_GLOO) GTEST_SKIP() << "moe was built without Gloo";
  const auto missing = moe::testing::default_corpus_missing();
  if (!missing.empty()) GTEST_SKIP() << "default corpus unavailable: " << missing;
  const std::string bin = moe::testing::kBinDir;
  const auto cache = moe::testing::scratch("parallel_cache");
  const auto one = moe::testing::scratch("parallel_one"), two = moe::testing::scratch("parallel_two");
  // Switch routing and no dropout: nothing random in training, so the two runs can be compared.
  const std::string common = " --config " + std::string(moe::testing::kSourceDir) +
                             "/configs/tiny.toml --moe.variant switch --model.dropout 0 --data.max_test_sentences 20"
                             " --train.max_steps 50 --train.log_every 1 --train.validate_every 50"
                             " --train.checkpoint_every 50 --train.threads 1 --log_level warn --data.cache_dir " +
                             cache.string();
  auto single = run(bin + "/moe-train" + common + " --run_dir " + one.string() + " --train.update_freq 2");
  ASSERT_EQ(single.first, 0) << single.second;
  auto multi =
      run(bin + "/moe-launch --nproc 2 --timeout 600 -- " + bin + "/moe-train" + common + " --run_dir " + two.string() +
          " --train.update_freq 1 --parallel.backend gloo --parallel.expert_parallel_size 2"
          " --parallel.timeout_s 60");
  ASSERT_EQ(multi.first, 0) << multi.second;
  const auto a = losses(one), b = losses(two);
  ASSERT_EQ(a.size(), 50u);
  ASSERT_EQ(b.size(), 50u) << multi.second;
  const auto [worst, n] = compare(a, b);
  EXPECT_EQ(n, 50);
  EXPECT_LT(worst, 1e-3) << "first step: " << a.at(1) << " vs " << b.at(1) << "; last: " << a.at(50) << " vs "
                         << b.at(50);
  EXPECT_GT(a.at(1) - a.at(50), 0.5) << "the loss did not fall";
  std::cout << "[ parallel ] 50 updates, worst per-step loss difference " << worst << " (" << a.at(1) << " -> "
            << a.at(50) << ")\n";
  // Evaluation: rank 0 decoded with every expert gathered into one model; the nearly identical
  // models translate alike (not asserted equal: a near-tie in the beam may flip).
  auto results_one = slurp(one / "results.json"), results_two = slurp(two / "results.json");
  EXPECT_NE(results_two.find("\"bleu\""), std::string::npos) << multi.second;
  EXPECT_NE(results_two.find("\"de-en\""), std::string::npos);
  std::cout << "[ parallel ] BLEU de-en: 1 process " << number_after(results_one, "\"de-en\"") << ", 2 ranks "
            << number_after(results_two, "\"de-en\"") << "\n";
  EXPECT_EQ(number_after(results_one, "\"total_parameters\""), number_after(results_two, "\"total_parameters\""))
      << "parameter counts must count every expert, wherever it lives";
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

// A multi-process run resumed at the same world size repeats the uninterrupted one exactly (every
// rank's random stream is in the checkpoint: dropout and GShard's sampled second expert included).
// Resumed with another layout (2 ranks without expert sharding; 1 process with update_freq 2) it
// continues the same optimisation: with nothing random in training the losses follow.
TEST(ParallelTraining, ResumeIsExactAndReshardsToOtherWorldSizes) {
  if (!MOE_WITH_GLOO) GTEST_SKIP() << "moe was built without Gloo";
  const auto missing = moe::testing::default_corpus_missing();
  if (!missing.empty()) GTEST_SKIP() << "default corpus unavailable: " << missing;
  const std::string bin = moe::testing::kBinDir;
  const auto cache = moe::testing::scratch("parallel_cache");
  const std::string launch2 = bin + "/moe-launch --nproc 2 --timeout 600 -- ";
  const std::string gloo = " --parallel.backend gloo --parallel.timeout_s 60";
  auto base = [&](const fs::path& dir) {
    return bin + "/moe-train --config " + std::string(moe::testing::kSourceDir) +
           "/configs/tiny.toml --no-eval --train.max_steps 24 --train.log_every 1 --train.validate_every 12"
           " --train.checkpoint_every 12 --train.keep_last 3 --train.threads 1 --log_level warn --data.cache_dir " +
           cache.string() + " --run_dir " + dir.string();
  };
  // 1. Exact resume, tiny defaults (gshard with a sampled second expert, dropout 0.1), 2 ranks, EP 2.
  const auto exact = moe::testing::scratch("parallel_exact");
  auto first = run(launch2 + base(exact) + gloo + " --parallel.expert_parallel_size 2");
  ASSERT_EQ(first.first, 0) << first.second;
  const auto uninterrupted = losses(exact);
  ASSERT_EQ(uninterrupted.size(), 24u);
  auto resumed = run(launch2 + base(exact) + gloo + " --parallel.expert_parallel_size 2 --resume " +
                     (exact / "checkpoint-12.moeckpt").string());
  ASSERT_EQ(resumed.first, 0) << resumed.second;
  const auto again = losses(exact);
  ASSERT_EQ(again.size(), 24u);
  for (int64_t step = 13; step <= 24; ++step)
    EXPECT_EQ(uninterrupted.at(step), again.at(step)) << "step " << step << " differs after resuming at 12";
  EXPECT_TRUE(fs::exists(exact / "checkpoint-24.experts-1-of-2.moeckpt"));  // written again by the resumed run

  // 2. Reshard: nothing random in training (switch routing, no dropout); the 2-rank EP-2 checkpoint
  // at step 12 resumed with 2 ranks at EP 1 and with 1 process (update_freq 2, the same batches).
  const std::string deterministic = " --moe.variant switch --model.dropout 0";
  const auto source = moe::testing::scratch("parallel_reshard_source");
  auto src = run(launch2 + base(source) + deterministic + gloo + " --parallel.expert_parallel_size 2");
  ASSERT_EQ(src.first, 0) << src.second;
  const auto reference = losses(source);
  const auto checkpoint = (source / "checkpoint-12.moeckpt").string();
  const auto ep1 = moe::testing::scratch("parallel_reshard_ep1"), single = moe::testing::scratch("parallel_reshard_1");
  auto r1 =
      run(launch2 + base(ep1) + deterministic + gloo + " --parallel.expert_parallel_size 1 --resume " + checkpoint);
  ASSERT_EQ(r1.first, 0) << r1.second;
  auto r2 = run(base(single) + deterministic + " --train.update_freq 2 --resume " + checkpoint);
  ASSERT_EQ(r2.first, 0) << r2.second;
  for (const auto& dir : {ep1, single}) {
    const auto [worst, n] = compare(reference, losses(dir));
    EXPECT_EQ(n, 12) << dir;
    EXPECT_LT(worst, 1e-3) << dir;
    std::cout << "[ parallel ] resumed " << dir.filename() << " from the 2-rank EP-2 checkpoint: 12 updates, worst "
              << "loss difference " << worst << "\n";
  }
}

// Every variant trains, validates, checkpoints and evaluates on two ranks with its experts sharded
// over both (SMoE's passes agreed across ranks, THOR's two passes, XMoE's variable k, expert choice,
// hash routing); an SMoE run then continues in one process from the sharded checkpoint.
TEST(ParallelTraining, EveryVariantRunsOnTwoRanks) {
  if (!MOE_WITH_GLOO) GTEST_SKIP() << "moe was built without Gloo";
  const auto missing = moe::testing::default_corpus_missing();
  if (!missing.empty()) GTEST_SKIP() << "default corpus unavailable: " << missing;
  const std::string bin = moe::testing::kBinDir;
  const auto cache = moe::testing::scratch("parallel_cache");
  for (const std::string variant : {"smoe", "thor", "xmoe", "expert_choice", "hash"}) {
    const auto dir = moe::testing::scratch("parallel_variant_" + variant);
    const std::string train = bin + "/moe-train --config " + std::string(moe::testing::kSourceDir) +
                              "/configs/tiny.toml --moe.variant " + variant +
                              (variant == "smoe" ? " --moe.strata 2,2" : "") +
                              " --data.max_test_sentences 10 --train.log_every 4 --train.validate_every 6"
                              " --train.checkpoint_every 6 --train.threads 1 --log_level warn --eval.beam 2"
                              " --data.cache_dir " +
                              cache.string() + " --run_dir " + dir.string();
    auto r = run(bin + "/moe-launch --nproc 2 --timeout 600 -- " + train +
                 " --train.max_steps 12 --parallel.backend gloo --parallel.expert_parallel_size 2"
                 " --parallel.timeout_s 60");
    ASSERT_EQ(r.first, 0) << variant << ":\n" << r.second;
    EXPECT_TRUE(fs::exists(dir / "results.json")) << variant;
    EXPECT_TRUE(fs::exists(dir / "checkpoint-12.experts-1-of-2.moeckpt")) << variant;
    EXPECT_EQ(losses(dir).size(), 3u) << variant;
    if (variant == "hash") {  // sharded checkpoints average into one file that one process translates
      auto avg = run(bin + "/moe-average --run_dir " + dir.string() + " --last 2");
      ASSERT_EQ(avg.first, 0) << avg.second;
      auto translated = run("echo 'Open the file' | " + bin + "/moe-translate --checkpoint " +
                            (dir / "average-last2.moeckpt").string() + " --target de");
      EXPECT_EQ(translated.first, 0) << translated.second;
    }
    if (variant != "smoe") continue;
    auto single = run(train + " --train.max_steps 18 --resume");
    ASSERT_EQ(single.first, 0) << single.second;
    EXPECT_NE(single.second.find("random streams restart"), std::string::npos) << single.second;
    EXPECT_TRUE(fs::exists(dir / "checkpoint-18.moeckpt"));
    EXPECT_FALSE(fs::exists(dir / "checkpoint-18.experts-0-of-2.moeckpt"));
    EXPECT_EQ(losses(dir).size(), 5u);  // steps 4, 8, 12 from two ranks; 16, 18 from one process
  }
}

}  // namespace
