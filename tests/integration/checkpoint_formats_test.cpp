// Checkpoints written before the one-format rebuild still load. The golden file
// tests/data/format1-single-process.moeckpt.gz was written by the single-process moe-train of
// commit 9374691 (format 1: one LibTorch archive with "model" and "optimizer" entries) from
//   configs/tiny.toml --model.d_model 16 --model.heads 2 --model.ffn_hidden 32 --train.max_steps 30
//   --train.validate_every 30 --train.checkpoint_every 30 --train.log_every 10 --train.threads 2
// and that run recorded its validation loss at step 30 (metrics.jsonl) and, through moe-translate
// --beam 2, the translations below. Converted on reading, the checkpoint reproduces both, resumes
// training, and loads into moe-translate.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "errors.h"
#include "moe/eval/translate.h"
#include "moe/train/averaging.h"
#include "moe/train/checkpoint_file.h"
#include "moe/train/run_checkpoint.h"
#include "moe/train/trainer.h"
#include "programs.h"
#include "scratch.h"
#include "test_paths.h"

namespace moe {
namespace {

namespace fs = std::filesystem;

// The golden checkpoint, unpacked into a fresh run folder as checkpoint-30.moeckpt.
std::string unpack_format1(const std::string& name) {
  const auto dir = moe::testing::scratch(name);
  const auto path = (dir / "checkpoint-30.moeckpt").string();
  const auto gz =
      (fs::path(moe::testing::kSourceDir) / "tests" / "data" / "format1-single-process.moeckpt.gz").string();
  EXPECT_EQ(std::system(("gzip -dc '" + gz + "' > '" + path + "'").c_str()), 0);
  return path;
}

const std::vector<std::string> kInputs{"Open the file", "Save the document as", "Quit", "Print preview"};
// moe-translate --beam 2 --target de with the format-1 program (an undertrained model's output).
const std::vector<std::string> kGoldenGerman{"msssssssssssssssss", "sssssssssssssssssssssssss", "sssssssssssssssss",
                                             "sssssssssssssssssssssss"};
constexpr double kGoldenValidLoss = 5.961024153877296;  // its metrics.jsonl at step 30

TEST(CheckpointFormatsTest, Format1SingleProcessCheckpointTranslatesAsItDidThen) {
  const auto path = unpack_format1("format1_translate");
  auto loaded = load_model_checkpoint(path);
  EXPECT_EQ(loaded.step, 30);
  EXPECT_EQ(loaded.config.model.d_model, 16);
  TranslateOptions options;
  options.search.beam = 2;
  options.max_length = loaded.config.data.max_length;
  EXPECT_EQ(translate(loaded.model, loaded.tokenizer, "<2de>", kInputs, options), kGoldenGerman);
  // The program loads it too.
  std::ofstream(fs::path(path).parent_path() / "in.txt") << "Quit\n";
  auto [rc, out] = moe::testing::run(std::string(moe::testing::kBinDir) + "/moe-translate --checkpoint " + path +
                                     " --target de --beam 2 -i " + (fs::path(path).parent_path() / "in.txt").string());
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, kGoldenGerman[2] + "\n");
}

TEST(CheckpointFormatsTest, Format1SingleProcessCheckpointResumes) {
  const auto missing = moe::testing::default_corpus_missing();
  if (!missing.empty()) GTEST_SKIP() << "default corpus unavailable: " << missing;
  const auto path = unpack_format1("format1_resume");
  RunConfig c;
  apply_toml_file(c, (fs::path(moe::testing::kSourceDir) / "configs" / "tiny.toml").string());
  c.run_dir = fs::path(path).parent_path().string();
  c.data.cache_dir = moe::testing::scratch("format1_cache").string();
  c.log_level = "warn";
  c.model.d_model = 16;
  c.model.heads = 2;
  c.model.ffn_hidden = 32;
  c.train.max_steps = 34;
  c.train.threads = 1;
  c.eval.enabled = false;
  Trainer t(c, path);
  EXPECT_EQ(t.step(), 30);
  // Every weight was converted: the validation loss of that run, to the last bits of a double sum.
  EXPECT_NEAR(t.validate().loss, kGoldenValidLoss, 1e-9);
  t.train();
  EXPECT_EQ(t.step(), 34);
  ASSERT_EQ(t.history().size(), 4u);
  EXPECT_LT(t.history().back().loss, 7.0);
  // The continuation is written in today's format, which loads again.
  auto again = open_run_checkpoint(step_checkpoint_path(c.run_dir, 34));
  EXPECT_EQ(again.format, kRunCheckpointFormat);
  EXPECT_EQ(again.step, 34);
}

// fairseq's average_checkpoints semantics on checkpoints of a real run whose model entries are set to
// hand-chosen values; one checkpoint averages to itself, bit for bit.
TEST(CheckpointAveragingTest, OneIsTheIdentityAndThreeAverageExactly) {
  const auto missing = moe::testing::default_corpus_missing();
  if (!missing.empty()) GTEST_SKIP() << "default corpus unavailable: " << missing;
  const auto dir = moe::testing::scratch("averaging").string();
  RunConfig c;
  apply_toml_file(c, (fs::path(moe::testing::kSourceDir) / "configs" / "tiny.toml").string());
  c.run_dir = dir + "/run";
  c.data.cache_dir = moe::testing::scratch("averaging_cache").string();
  c.log_level = "warn";
  c.train.threads = 1;
  c.train.max_steps = 6;
  c.train.checkpoint_every = 2;
  c.train.keep_last = 5;
  c.eval.enabled = false;
  Trainer(c).train();
  const auto inputs = last_step_checkpoints(c.run_dir, 3);
  ASSERT_EQ(inputs.size(), 3u);
  EXPECT_EQ(inputs.back(), step_checkpoint_path(c.run_dir, 6));
  // The identity.
  average_checkpoints({inputs[1]}, dir + "/one.moeckpt");
  auto one = open_run_checkpoint(dir + "/one.moeckpt"), source = open_run_checkpoint(inputs[1]);
  int64_t model_entries = 0;
  for (const auto& [name, t] : source.state) {
    if (name.rfind("trainer.", 0) == 0 || name.rfind("optimizer.", 0) == 0) continue;
    ASSERT_TRUE(one.state.count(name)) << name;
    EXPECT_TRUE(at::equal(one.state.at(name), t)) << name;
    ++model_entries;
  }
  EXPECT_GT(model_entries, 10);
  EXPECT_EQ(one.state.count("optimizer.embed.weight.exp_avg"), 0u);  // for translation, not for resuming
  // Hand values: 1, 2 and 6 in every model entry of the three checkpoints average to 3 exactly.
  const std::vector<double> values{1, 2, 6};
  std::vector<std::string> made;
  for (size_t i = 0; i < 3; ++i) {
    auto opened = open_run_checkpoint(inputs[i]);
    for (auto& [name, t] : opened.state)
      if (name.rfind("trainer.", 0) != 0 && name.rfind("optimizer.", 0) != 0 && t.is_floating_point())
        t = at::full_like(t, values[i]);
    save_run_checkpoint(dir + "/made" + std::to_string(i), 2 * static_cast<int64_t>(i + 1), opened.state, {}, false, 5);
    made.push_back(step_checkpoint_path(dir + "/made" + std::to_string(i), 2 * static_cast<int64_t>(i + 1)));
  }
  average_checkpoints(made, dir + "/avg.moeckpt");
  auto avg = open_run_checkpoint(dir + "/avg.moeckpt");
  EXPECT_EQ(avg.step, 6);  // the last one's
  for (const auto& [name, t] : avg.state) {
    if (name.rfind("trainer.", 0) != 0 && t.is_floating_point()) {
      EXPECT_TRUE(at::equal(t, at::full_like(t, 3.0))) << name;
    }
  }
  // It translates, and it refuses to be resumed.
  EXPECT_EQ(load_model_checkpoint(dir + "/avg.moeckpt").step, 6);
  EXPECT_NE(moe::testing::run(std::string(moe::testing::kBinDir) + "/moe-average --run_dir " + c.run_dir + " --last 9")
                .second.find("holds 3 step checkpoint(s), fewer than 9"),
            std::string::npos);
  auto resume = c;
  resume.train.max_steps = 8;
  EXPECT_NE(
      moe::testing::error_of([&] { Trainer t(resume, dir + "/avg.moeckpt"); }).find("is an average of checkpoints"),
      std::string::npos);
}

}  // namespace
}  // namespace moe
