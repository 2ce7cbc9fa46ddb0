// Training parts: label-smoothed CE against a float64 per-token formula and its gradient, the
// inverse-sqrt schedule against hand values, checkpoint files (round trip, truncation, corruption,
// a process killed mid-write), the run config (TOML round trip, unknown keys, overrides, errors),
// JSON output and the expert-usage heatmap.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "errors.h"
#include "gradcheck.h"
#include "moe/core/json.h"
#include "moe/train/checkpoint_file.h"
#include "moe/train/config.h"
#include "moe/train/label_smoothing.h"
#include "moe/train/report.h"
#include "moe/train/schedule.h"
#include "scratch.h"
#include "test_paths.h"

namespace moe {
namespace {

using moe::testing::error_of;

TEST(LabelSmoothingTest, MatchesFairseqFormulaInFloat64) {
  auto logits = at::randn({2, 3, 7}, at::kDouble);
  auto target = at::tensor({4L, 0L, 6L, 1L, 2L, 0L}).view({2, 3});
  const double eps = 0.1;
  auto r = label_smoothed_cross_entropy(logits, target, eps, /*padding_idx=*/0);
  double loss = 0, nll = 0;
  int64_t n = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 3; ++t) {
      const int64_t y = target[b][t].item<int64_t>();
      if (y == 0) continue;
      auto row = logits[b][t];
      const double lse = std::log(row.exp().sum().item<double>());
      double sum_neg_logp = 0;
      for (int64_t v = 0; v < 7; ++v) sum_neg_logp += lse - row[v].item<double>();
      const double token_nll = lse - row[y].item<double>();
      const double eps_i = eps / 6.0;
      loss += (1 - eps - eps_i) * token_nll + eps_i * sum_neg_logp;
      nll += token_nll;
      ++n;
    }
  EXPECT_EQ(r.num_tokens, n);
  EXPECT_NEAR(r.loss.item<double>(), loss, 1e-10);
  EXPECT_NEAR(r.nll.item<double>(), nll, 1e-10);
  // ε = 0 is plain cross-entropy.
  auto plain = label_smoothed_cross_entropy(logits, target, 0.0, 0);
  EXPECT_NEAR(plain.loss.item<double>(), nll, 1e-10);
}

TEST(LabelSmoothingTest, Gradcheck) {
  auto logits = at::randn({4, 5}, at::kDouble).requires_grad_(true);
  auto target = at::tensor({1L, 0L, 3L, 4L});
  EXPECT_TRUE(
      moe::testing::gradcheck([&] { return label_smoothed_cross_entropy(logits, target, 0.2, 0).loss; }, {logits}));
}

TEST(LabelSmoothingTest, BadShapesAreErrors) {
  EXPECT_NE(error_of([] {
              label_smoothed_cross_entropy(at::randn({2, 5}), at::zeros({3}, at::kLong), 0.1, 0);
            }).find("target must be int64"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              label_smoothed_cross_entropy(at::randn({2, 5}), at::zeros({2}, at::kLong), 1.0, 0);
            }).find("epsilon must be in [0, 1)"),
            std::string::npos);
}

TEST(ScheduleTest, InverseSqrtHandValues) {
  InverseSqrtSchedule s{1e-3, 100, 1e-7};
  EXPECT_DOUBLE_EQ(s.at(0), 1e-7);
  EXPECT_NEAR(s.at(50), 1e-7 + (1e-3 - 1e-7) * 0.5, 1e-15);
  EXPECT_DOUBLE_EQ(s.at(100), 1e-3);
  EXPECT_NEAR(s.at(400), 1e-3 * 0.5, 1e-15);
  EXPECT_NEAR(s.at(10000), 1e-4, 1e-15);
  InverseSqrtSchedule bad{1e-3, 0, 0};
  EXPECT_NE(error_of([&] { bad.validate("train"); }).find("train.warmup must be >= 1, got 0"), std::string::npos);
}

TEST(CheckpointFileTest, RoundTripAndListing) {
  const std::string dir = moe::testing::scratch("ckpt_roundtrip").string();
  std::string payload(100000, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 31 + 7);
  write_checkpoint_file(step_checkpoint_path(dir, 20), payload);
  write_checkpoint_file(step_checkpoint_path(dir, 3), "small");
  std::ofstream(dir + "/checkpoint-7.moeckpt.tmp.123") << "partial";
  std::ofstream(dir + "/checkpoint-x.moeckpt") << "not a step";
  EXPECT_EQ(read_checkpoint_file(step_checkpoint_path(dir, 20)), payload);
  auto list = list_step_checkpoints(dir);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].first, 3);
  EXPECT_EQ(list[1].first, 20);
}

TEST(CheckpointFileTest, TruncatedAndCorruptedFilesAreDetected) {
  const std::string dir = moe::testing::scratch("ckpt_corrupt").string();
  const auto path = dir + "/c.moeckpt";
  write_checkpoint_file(path, std::string(5000, 'a') + "payload");
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes.substr(0, bytes.size() - 10);
  }
  EXPECT_NE(error_of([&] { read_checkpoint_file(path); }).find("is truncated"), std::string::npos);
  bytes[bytes.size() - 3] ^= 0x20;
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  EXPECT_NE(error_of([&] { read_checkpoint_file(path); }).find("corrupted (checksum mismatch)"), std::string::npos);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << "PK\x03\x04 a zip file";
  }
  EXPECT_NE(error_of([&] { read_checkpoint_file(path); }).find("is not a moe checkpoint"), std::string::npos);
}

TEST(CheckpointFileTest, KillDuringWriteKeepsThePreviousFile) {
  const std::string dir = moe::testing::scratch("ckpt_kill").string();
  const auto path = dir + "/checkpoint-1.moeckpt";
  write_checkpoint_file(path, "the old checkpoint");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child dies abruptly halfway through writing the new version (no cleanup, no rename).
    set_checkpoint_write_hook([] { ::_exit(42); });
    write_checkpoint_file(path, std::string(1 << 20, 'n'));
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 42) << "the hook did not run";
  EXPECT_EQ(read_checkpoint_file(path), "the old checkpoint");
  EXPECT_EQ(list_step_checkpoints(dir).size(), 1u);  // the partial temporary is not listed
}

TEST(RunConfigTest, TomlRoundTripAndOverrides) {
  RunConfig c;
  c.model.d_model = 256;
  c.model.moe.variant = "xmoe";
  c.model.moe.threshold = 0.75;
  c.data.languages = "de,fr";
  c.train.lr = 7e-4;
  c.eval.enabled = false;
  c.data.root = "C:\\corpora\\multi30k #1";  // backslashes and a hash inside a string
  RunConfig back;
  apply_toml(back, c.to_toml(), "test");
  EXPECT_EQ(back.to_toml(), c.to_toml());
  EXPECT_EQ(back.model.d_model, 256);
  EXPECT_EQ(back.model.moe.variant, "xmoe");
  EXPECT_DOUBLE_EQ(back.model.moe.threshold, 0.75);
  EXPECT_DOUBLE_EQ(back.train.lr, 7e-4);
  EXPECT_FALSE(back.eval.enabled);
  EXPECT_EQ(back.data.root, c.data.root);
  set_config_value(back, "moe.num_experts", "16");
  EXPECT_EQ(back.model.moe.num_experts, 16);
  apply_toml(back, "[data]\nlanguages = [\"de\", \"es\"]\n", "arrays");
  EXPECT_EQ(back.data.languages, "de,es");
}

TEST(RunConfigTest, UnknownKeysAndBadValuesAreErrors) {
  RunConfig c;
  EXPECT_NE(error_of([&] {
              apply_toml(c, "[model]\nd_modl = 3\n", "f.toml");
            }).find("f.toml:2: unknown key 'model.d_modl' (known in this section: model.d_model"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_toml(c, "[nosuch]\nx = 3\n", "f.toml"); }).find("unknown section"), std::string::npos);
  EXPECT_NE(error_of([&] {
              apply_toml(c, "[model]\nd_model = \"big\"\n", "f.toml");
            }).find("f.toml:2: model.d_model: expected an integer, got 'big'"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              apply_toml(c, "[model]\nd_model = \"unterminated\n", "f.toml");
            }).find("f.toml:2: unterminated string"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { apply_toml(c, "[model]\nactivation = \"relu\" x\n", "f.toml"); }).find("unexpected text after the value"),
      std::string::npos);
  EXPECT_NE(error_of([&] { set_config_value(c, "train.nope", "1"); }).find("unknown config key 'train.nope'"),
            std::string::npos);
  c.train.lr = 0;
  EXPECT_NE(error_of([&] { c.validate(); }).find("train.lr must be > 0, got 0"), std::string::npos);
  c = RunConfig();
  c.model.moe.variant = "smoe";
  c.model.moe.strata = "4,3";
  EXPECT_NE(error_of([&] { c.validate(); }).find("moe.strata='4,3' sums to 7 but moe.num_experts=8"),
            std::string::npos);
  c = RunConfig();
  c.train.precision = "bf16";
  EXPECT_NE(error_of([&] { c.validate(); }).find("bf16 needs train.device = cuda"), std::string::npos);
  c = RunConfig();
  c.data.directions = "en_de";
  EXPECT_NE(error_of([&] { c.validate(); }).find("'en_de' is not of the form src-tgt"), std::string::npos);
}

TEST(RunConfigTest, Directions) {
  DataConfig d;
  d.languages = "de, fr";
  EXPECT_EQ(run_directions(d),
            (std::vector<std::pair<std::string, std::string>>{{"en", "de"}, {"de", "en"}, {"en", "fr"}, {"fr", "en"}}));
  d.directions = "xx-pivot";
  EXPECT_EQ(run_directions(d), (std::vector<std::pair<std::string, std::string>>{{"de", "en"}, {"fr", "en"}}));
  d.directions = "cs-de";
  EXPECT_EQ(run_directions(d), (std::vector<std::pair<std::string, std::string>>{{"cs", "de"}}));
}

TEST(ConfigFilesTest, EveryShippedConfigParsesAndValidates) {
  const std::filesystem::path dir = std::filesystem::path(moe::testing::kSourceDir) / "configs";
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (entry.path().extension() != ".toml" || name.rfind("bench_", 0) == 0) continue;
    RunConfig c;
    ASSERT_NO_THROW(apply_toml_file(c, entry.path().string())) << name;
    EXPECT_NO_THROW(c.validate()) << name << ": " << error_of([&] { c.validate(); });
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

TEST(JsonTest, WritesValidJson) {
  auto j = Json::object()
               .set("s", "a\"b\\c\n\x01")
               .set("i", int64_t{-3})
               .set("d", 0.1)
               .set("nan", std::nan(""))
               .set("b", true)
               .set("list", Json(std::vector<int64_t>{1, 2}))
               .set("empty", Json::object());
  EXPECT_EQ(j.dump(),
            R"({"s": "a\"b\\c\n\u0001", "i": -3, "d": 0.1, "nan": null, "b": true, "list": [1, 2], "empty": {}})");
  EXPECT_EQ(Json(1.0 / 3.0).dump(), "0.3333333333333333");  // shortest round-trip form
  EXPECT_EQ(Json(1e-7).dump(), "1e-07");
}

TEST(ReportTest, HeatmapAndProgress) {
  auto svg = expert_usage_svg("t<1>", {"en-de", "de-en"}, {{3, 1, 0}, {0, 0, 5}});
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("t&lt;1&gt;"), std::string::npos);
  EXPECT_NE(svg.find("en-de expert 0: 75%"), std::string::npos);
  EXPECT_NE(svg.find("de-en expert 2: 100%"), std::string::npos);
  EXPECT_EQ(format_duration(3725), "1h02m");
  EXPECT_EQ(format_duration(192), "3m12s");
  auto line = progress_line(5, 10, 2.5, 12.2, 1e-3, 1000, 30);
  EXPECT_NE(line.find("step 5/10 [############------------] loss 2.500"), std::string::npos);
  // Under a time budget the bar follows the time spent.
  EXPECT_NE(progress_line(5, 1000, 2.5, 12.2, 1e-3, 1000, 30, 4, 0.75).find("[###-]"), std::string::npos);
}

}  // namespace
}  // namespace moe
