// *_CUDA tests of the trainer on the GPU (tiny config, default corpus):
//   - every variant trains, validates, checkpoints, resumes and translates on CUDA;
//   - the variants without random routing (and GShard/top-k with the greedy second expert) follow
//     the same updates on the CPU within fp32 tolerance (dropout off, same seed, same batches);
//   - the device-to-host reads of one update, counted with the CUDA synchronisation debug mode,
//     equal docs/gpu-training.md's table: one for the step's sums and norm, one per MoE layer call
//     (the layout's counts). A new read in the step makes this test fail.
// Skipped without a CUDA device; compiled to a single skip where moe was built without the CUDA tier.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "moe/core/build_config.h"
#include "moe/train/config.h"
#include "moe/train/trainer.h"
#include "programs.h"
#include "scratch.h"
#include "test_paths.h"
#if MOE_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>
#endif

namespace moe {
namespace {

#if MOE_WITH_CUDA
namespace fs = std::filesystem;

// MOE_CUDA_TEST_DATA: a folder corpus with <src>-<tgt> pairs or multi-way files of en, de and fr
// (e.g. Multi30k) to use instead of the default gettext corpus, which a bare GPU machine lacks.
const char* folder_corpus() { return std::getenv("MOE_CUDA_TEST_DATA"); }

#define MOE_REQUIRE_GPU_AND_CORPUS()                                                                   \
  do {                                                                                                 \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";                                \
    static const std::string missing = folder_corpus() ? "" : moe::testing::default_corpus_missing(); \
    if (!missing.empty()) GTEST_SKIP() << "default corpus unavailable (or set MOE_CUDA_TEST_DATA): " << missing; \
  } while (0)

const std::string& shared_cache() {
  static const std::string dir = moe::testing::scratch("cuda_training_cache").string();
  return dir;
}

// The tiny config on `device`, dropout off and the greedy second expert: no random draw that the
// CPU and CUDA generators would make differently (THOR's random experts aside).
RunConfig tiny(const std::string& name, const std::string& variant, const std::string& device) {
  RunConfig c;
  apply_toml_file(c, (fs::path(moe::testing::kSourceDir) / "configs" / "tiny.toml").string());
  apply_toml(c,
             "[model]\ndropout = 0.0\nattention_dropout = 0.0\nactivation_dropout = 0.0\n"
             "[moe]\nsecond_expert_policy = \"greedy\"\n",
             "the CUDA training test");
  if (folder_corpus()) {
    c.data.corpus = "folder";
    c.data.root = folder_corpus();
  }
  c.run_dir = moe::testing::scratch(name + "_" + variant + "_" + device).string();
  c.data.cache_dir = shared_cache();
  c.log_level = "warn";
  c.train.device = device;
  c.model.moe.variant = variant;
  c.model.moe.strata = "2,2";  // smoe: the tiny config has 4 experts
  return c;
}

class EveryVariant_CUDA : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryVariant_CUDA, TrainsValidatesCheckpointsResumesAndTranslates) {
  MOE_REQUIRE_GPU_AND_CORPUS();
  auto c = tiny("every", GetParam(), "cuda");
  c.train.max_steps = 6;
  c.train.validate_every = 3;
  c.train.checkpoint_every = 3;
  {
    Trainer t(c);
    EXPECT_TRUE(t.model()->parameters().front().is_cuda());
    t.train();
    ASSERT_EQ(t.history().size(), 6u);
    for (const auto& r : t.history()) EXPECT_TRUE(std::isfinite(r.loss) && std::isfinite(r.grad_norm)) << r.step;
  }
  c.train.max_steps = 8;
  Trainer resumed(c, "latest");
  EXPECT_EQ(resumed.step(), 6);
  resumed.train();
  EXPECT_EQ(resumed.step(), 8);
  auto result = resumed.evaluate();
  ASSERT_EQ(result.directions.size(), 4u);
  for (const auto& d : result.directions) {
    EXPECT_EQ(d.sentences, 40) << d.source << "-" << d.target;
    EXPECT_TRUE(std::isfinite(d.bleu) && d.bleu >= 0) << d.source << "-" << d.target;
    EXPECT_TRUE(fs::exists(d.hypothesis_file));
  }
  EXPECT_TRUE(fs::exists(fs::path(c.run_dir) / "results.json"));
}

INSTANTIATE_TEST_SUITE_P(Variants, EveryVariant_CUDA,
                         ::testing::Values("dense", "switch", "gshard", "topk", "xmoe", "thor", "smoe", "expert_choice",
                                           "hash"),
                         [](const auto& p) { return p.param; });

class GpuFollowsCpu_CUDA : public ::testing::TestWithParam<std::string> {};

TEST_P(GpuFollowsCpu_CUDA, SameUpdatesWithinFp32Tolerance) {
  MOE_REQUIRE_GPU_AND_CORPUS();
  auto run = [&](const std::string& device) {
    auto c = tiny("follows", GetParam(), device);
    c.train.max_steps = 5;
    c.train.validate_every = 100;
    c.train.checkpoint_every = 100;
    c.eval.enabled = false;
    Trainer t(c);
    t.train();
    return std::make_pair(t.history(), t.validate().loss);
  };
  const auto [cpu, cpu_valid] = run("cpu");
  const auto [gpu, gpu_valid] = run("cuda");
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_NEAR(gpu[i].loss, cpu[i].loss, 2e-3 * std::abs(cpu[i].loss)) << "update " << cpu[i].step;
    EXPECT_NEAR(gpu[i].grad_norm, cpu[i].grad_norm, 2e-2 * std::abs(cpu[i].grad_norm)) << "update " << cpu[i].step;
    EXPECT_EQ(gpu[i].tokens, cpu[i].tokens);
  }
  EXPECT_NEAR(gpu_valid, cpu_valid, 2e-3 * std::abs(cpu_valid));
}

INSTANTIATE_TEST_SUITE_P(Variants, GpuFollowsCpu_CUDA,
                         ::testing::Values("dense", "switch", "gshard", "topk", "xmoe", "smoe", "expert_choice", "hash"),
                         [](const auto& p) { return p.param; });

// Counts c10's "called a synchronizing CUDA operation" warnings (the autograd engine replays its
// threads' warnings in the caller).
class SyncCounter : public c10::WarningHandler {
 public:
  void process(const c10::Warning& warning) override {
    if (warning.msg().find("synchroniz") != std::string::npos) ++count;
  }
  int64_t count = 0;
};

TEST(HostReads_CUDA, OneUpdateReadsWhatTheDocsList) {
  MOE_REQUIRE_GPU_AND_CORPUS();
  auto c = tiny("reads", "gshard", "cuda");
  c.train.max_steps = 6;
  c.train.log_every = 100;
  c.train.stats_every = 100;
  c.train.validate_every = 100;
  c.train.checkpoint_every = 100;
  c.eval.enabled = false;
  Trainer t(c);
  const int64_t moe_layers = static_cast<int64_t>(t.model()->moe_layer_names().size());
  ASSERT_EQ(moe_layers, 2);
  SyncCounter counter;
  std::vector<int64_t> marks;  // the count when each update's loss is ready (before its backward)
  Trainer::update_fault_hook() = [&](int64_t) {
    marks.push_back(counter.count);
    return false;
  };
  {
    c10::WarningUtils::WarningHandlerGuard guard(&counter);
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_WARN);
    try {
      t.train();
    } catch (...) {
      c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
      Trainer::update_fault_hook() = nullptr;
      throw;
    }
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
  }
  Trainer::update_fault_hook() = nullptr;
  ASSERT_EQ(marks.size(), 6u);
  // docs/gpu-training.md: the step's one read (sums + squared norms) and each MoE layer call's
  // layout counts (update_freq 1: one forward per update).
  const int64_t expected = 1 + moe_layers;
  for (size_t i = 2; i + 1 < marks.size(); ++i) {  // steady updates (the first ones warm caches up)
    std::printf("[ reads    ] update %zu: %lld device-to-host reads\n", i + 1,
                static_cast<long long>(marks[i + 1] - marks[i]));
    EXPECT_EQ(marks[i + 1] - marks[i], expected) << "update " << i + 1 << "; see docs/gpu-training.md";
  }
}

#else
TEST(CudaTrainingTier_CUDA, NotBuilt) { GTEST_SKIP() << "moe was built without the CUDA tier"; }
#endif

}  // namespace
}  // namespace moe
