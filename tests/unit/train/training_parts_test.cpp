// Training parts: label-smoothed CE against a float64 per-token formula and its gradient, the
// inverse-sqrt schedule against hand values, the fused AdamW against a float64 loop of its formula, checkpoint files
// (round trip, truncation, corruption, a process killed mid-write), the run config (TOML round trip, unknown keys,
// overrides, errors), JSON output and the expert-usage heatmap.
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
#include "moe/core/hash.h"
#include "moe/core/json.h"
#include "moe/routing/router_options.h"
#include "moe/train/checkpoint_file.h"
#include "moe/train/config.h"
#include "moe/train/label_smoothing.h"
#include "moe/train/optimizer.h"
#include "moe/train/report.h"
#include "moe/train/schedule.h"
#include "scratch.h"
#include "test_paths.h"
#include "tolerances.h"

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
  EXPECT_EQ(r.num_tokens.item<int64_t>(), n);
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

// The fused AdamW (at::_fused_adamw_) against AdamW written out in float64 (Loshchilov & Hutter:
// decoupled decay, then the bias-corrected moments), over five scheduled updates; a parameter that
// never has a gradient keeps its value and gets no state; the state reloads into a fresh optimizer
// and the next update equals the uninterrupted one bit for bit.
TEST(OptimizerTest, FusedAdamWMatchesTheFloat64FormulaAndResumesExactly) {
  TrainingConfig t;
  t.lr = 3e-3;
  t.warmup = 3;
  t.warmup_init_lr = 1e-4;
  t.adam_beta1 = 0.9;
  t.adam_beta2 = 0.98;
  t.adam_eps = 1e-6;
  t.weight_decay = 0.1;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  auto a = at::randn({7, 5}, gen), b = at::randn({11}, gen), unused = at::randn({3}, gen);
  std::vector<std::pair<std::string, at::Tensor>> named{{"a", a.clone()}, {"b", b.clone()}, {"unused", unused.clone()}};
  Optimizer opt(named, t);
  std::vector<at::Tensor> grads_a, grads_b;
  for (int i = 0; i < 6; ++i) grads_a.push_back(at::randn({7, 5}, gen)), grads_b.push_back(at::randn({11}, gen));
  // The float64 reference.
  auto ref = [&](at::Tensor p, const std::vector<at::Tensor>& grads, int updates) {
    p = p.to(at::kDouble);
    auto m = at::zeros_like(p), v = at::zeros_like(p);
    for (int s = 1; s <= updates; ++s) {
      const double lr = InverseSqrtSchedule{t.lr, t.warmup, t.warmup_init_lr}.at(s);
      auto g = grads[static_cast<size_t>(s - 1)].to(at::kDouble);
      p = p * (1 - lr * t.weight_decay);
      m = t.adam_beta1 * m + (1 - t.adam_beta1) * g;
      v = t.adam_beta2 * v + (1 - t.adam_beta2) * g * g;
      const double c1 = 1 - std::pow(t.adam_beta1, s), c2 = 1 - std::pow(t.adam_beta2, s);
      p = p - lr / c1 * m / ((v / c2).sqrt() + t.adam_eps);
    }
    return p;
  };
  auto apply = [&](Optimizer& o, std::vector<std::pair<std::string, at::Tensor>>& params, int s) {
    o.zero_grad();
    params[0].second.mutable_grad() = grads_a[static_cast<size_t>(s - 1)].clone();
    params[1].second.mutable_grad() = grads_b[static_cast<size_t>(s - 1)].clone();
    EXPECT_DOUBLE_EQ(o.step(s), InverseSqrtSchedule({t.lr, t.warmup, t.warmup_init_lr}).at(s));
  };
  for (int s = 1; s <= 5; ++s) apply(opt, named, s);
  EXPECT_TRUE(testing::all_close(named[0].second.to(at::kDouble), ref(a, grads_a, 5), {1e-6, 1e-5}));
  EXPECT_TRUE(testing::all_close(named[1].second.to(at::kDouble), ref(b, grads_b, 5), {1e-6, 1e-5}));
  EXPECT_TRUE(at::equal(named[2].second, unused));
  const auto state = opt.state();
  EXPECT_EQ(state.count("optimizer.unused.exp_avg"), 0u);
  EXPECT_EQ(state.at("optimizer.a.step").item<int64_t>(), 5);
  // Resume: a fresh optimizer over copies of the parameters, loaded from the state.
  std::vector<std::pair<std::string, at::Tensor>> copy;
  for (const auto& [name, p] : named) copy.emplace_back(name, p.detach().clone());
  Optimizer resumed(copy, t);
  resumed.load_state(state, "the test state");
  apply(opt, named, 6);
  apply(resumed, copy, 6);
  for (size_t i = 0; i < named.size(); ++i) EXPECT_TRUE(at::equal(named[i].second, copy[i].second)) << named[i].first;
  NamedState broken = state;
  broken.erase("optimizer.a.exp_avg_sq");
  EXPECT_NE(error_of([&] {
              resumed.load_state(broken, "ckpt.moeckpt");
            }).find("ckpt.moeckpt has an incomplete optimizer state for 'a'"),
            std::string::npos);
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

TEST(CheckpointFileTest, FilesOfTheFirstHeaderStillReadAndFoldersAreNamed) {
  const std::string dir = moe::testing::scratch("ckpt_v1").string();
  // A MOECKPT1 file, written by hand: its checksum used the offset basis one digit short.
  const std::string payload = "a payload of the first format";
  std::string bytes = "MOECKPT1";
  auto put = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) bytes += static_cast<char>((v >> (8 * i)) & 0xff);
  };
  put(payload.size());
  put(fnv1a64(kFnv1a64OffsetBefore202612, payload.data(), payload.size()));
  std::ofstream(dir + "/old.moeckpt", std::ios::binary) << bytes << payload;
  EXPECT_EQ(read_checkpoint_file(dir + "/old.moeckpt"), payload);
  bytes[16] ^= 1;  // the checksum no longer matches under either basis
  std::ofstream(dir + "/bad.moeckpt", std::ios::binary) << bytes << payload;
  EXPECT_NE(error_of([&] { read_checkpoint_file(dir + "/bad.moeckpt"); }).find("checksum mismatch"), std::string::npos);
  // New files carry MOECKPT2 and the standard FNV-1a 64 of the payload.
  write_checkpoint_file(dir + "/new.moeckpt", payload);
  std::ifstream in(dir + "/new.moeckpt", std::ios::binary);
  std::string head(24, '\0');
  in.read(head.data(), 24);
  EXPECT_EQ(head.substr(0, 8), "MOECKPT2");
  uint64_t hash = 0;
  for (int i = 0; i < 8; ++i) hash |= static_cast<uint64_t>(static_cast<unsigned char>(head[16 + i])) << (8 * i);
  EXPECT_EQ(hash, fnv1a64(payload));
  std::filesystem::create_directories(dir + "/folder.moeckpt");
  EXPECT_NE(error_of([&] { read_checkpoint_file(dir + "/folder.moeckpt"); }).find("is a folder, not a checkpoint file"),
            std::string::npos);
}

TEST(CheckpointFileTest, KillDuringWriteKeepsThePreviousFile) {
  const std::string dir = moe::testing::scratch("ckpt_kill").string();
  const auto path = dir + "/checkpoint-1.moeckpt";
  write_checkpoint_file(path, "the old checkpoint");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child dies abruptly halfway through writing the new version (no cleanup, no rename).
    set_checkpoint_write_hook([](const std::string&) { ::_exit(42); });
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
  c.model.moe.router.set("threshold", 0.75);
  c.model.moe.router.extra["cosine_dim"] = "32";  // a router of your own: [moe.router]
  c.data.languages = "de,fr";
  c.train.lr = 7e-4;
  c.eval.enabled = false;
  c.data.root = "C:\\corpora\\multi30k #1";  // backslashes and a hash inside a string
  RunConfig back;
  apply_toml(back, c.to_toml(), "test");
  EXPECT_EQ(back.to_toml(), c.to_toml());
  EXPECT_EQ(back.model.d_model, 256);
  EXPECT_EQ(back.model.moe.variant, "xmoe");
  EXPECT_DOUBLE_EQ(back.model.moe.resolved_router_options(back.model.d_model).threshold, 0.75);
  EXPECT_EQ(back.model.moe.router.extra, c.model.moe.router.extra);
  EXPECT_FALSE(back.model.moe.router.has("jitter"));  // left to the variant: a comment in the TOML
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
  // Malformed TOML: toml++'s description, with the file, the line and the column.
  EXPECT_NE(error_of([&] {
              apply_toml(c, "[model]\nd_model = \"unterminated\n", "f.toml");
            }).find("f.toml:2:24: Error while parsing string"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              apply_toml(c, "[model]\nactivation = \"relu\" x\n", "f.toml");
            }).find("f.toml:2:21: Error while parsing key-value pair: expected a comment or whitespace, saw 'x'"),
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

TEST(RunConfigTest, ValidTomlParsesAndInvalidTomlIsAnError) {
  // Valid TOML 1.0 that a hand-written reader got wrong: underscores and hex in integers, quoted
  // keys, dotted keys, inline tables, multi-line strings, comments after values.
  RunConfig c;
  apply_toml(c,
             "moe = { num_experts = 4 }\n[train]\nmax_steps = 1_500\n\"warmup\" = 0x40\n"
             "[model]\nactivation = \"\"\"gelu\"\"\"  # c\n",
             "t.toml");
  EXPECT_EQ(c.train.max_steps, 1500);
  EXPECT_EQ(c.train.warmup, 64);
  EXPECT_EQ(c.model.activation, "gelu");
  EXPECT_EQ(c.model.moe.num_experts, 4);
  EXPECT_NE(error_of([&] { apply_toml(c, "[model.moe]\nx = 1\n", "t.toml"); }).find("unknown key 'model.moe.x'"),
            std::string::npos);
  apply_toml(c, "[moe]\nnum_experts = 6\n[data]\ntemperature = 2\n", "t.toml");  // an integer for a float
  EXPECT_EQ(c.model.moe.num_experts, 6);
  EXPECT_DOUBLE_EQ(c.data.temperature, 2.0);
  // Wrong types, duplicates and bare words are errors naming the file, the line and the key.
  EXPECT_NE(error_of([&] {
              apply_toml(c, "[model]\nheads = \"4\"\n", "t.toml");
            }).find("t.toml:2: model.heads: expected an integer, got '4' (a TOML string)"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              apply_toml(c, "[model]\npre_norm = 1\n", "t.toml");
            }).find("t.toml:2: model.pre_norm: expected true or false"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              apply_toml(c, "[model]\nheads = 4\nheads = 8\n", "t.toml");
            }).find("t.toml:3:9: Error while parsing key-value pair: cannot redefine existing integer 'heads'"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              apply_toml(c, "[model]\nheads = 4\n[model]\nd_model = 8\n", "t.toml");
            }).find("t.toml:3:1: Error while parsing table header: cannot redefine existing table 'model'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_toml(c, "[moe]\nvariant = gshard\n", "t.toml"); }).find("t.toml:2:"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              apply_toml(c, "[train]\nlr = nan\n", "t.toml");
            }).find("t.toml:2: train.lr: expected a finite number, got 'nan'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_toml(c, "[[train]]\nlr = 1\n", "t.toml"); }).find("'train'"), std::string::npos);
}

TEST(RunConfigTest, RouterKeysComeFromTheRouterOptionList) {
  // Every router option is a moe.<key>; unset keys keep the variant's preset, set keys reach the
  // router of every variant that reads them (a registered router included).
  RunConfig c;
  RouterOptions scratch;
  auto fields = config_fields(c);
  for (const auto& f : router_option_fields(scratch)) {
    auto it = std::find_if(fields.begin(), fields.end(), [&](const ConfigField& g) { return g.key == "moe." + f.key; });
    ASSERT_NE(it, fields.end()) << f.key;
    EXPECT_FALSE(it->is_set()) << f.key;
  }
  c.model.moe.variant = "xmoe";
  EXPECT_EQ(c.model.moe.resolved_router_options(64).capacity.formula, CapacityFormula::kDeepSpeed);  // the preset
  apply_toml(c, "[moe]\nthreshold = 0.5\njitter = 0.1\ncapacity_formula = \"gshard\"\n", "t.toml");
  auto r = c.model.moe.resolved_router_options(64);
  EXPECT_DOUBLE_EQ(r.threshold, 0.5);
  EXPECT_DOUBLE_EQ(r.jitter, 0.1);
  EXPECT_EQ(r.capacity.formula, CapacityFormula::kGShard);
  c.model.moe.variant = "threshold";  // the registered router itself now reads moe.threshold too
  EXPECT_DOUBLE_EQ(c.model.moe.resolved_router_options(64).threshold, 0.5);
  // capacity_factor alone sets γ in training and evaluation.
  set_config_value(c, "moe.capacity_factor", "1.5");
  EXPECT_DOUBLE_EQ(c.model.moe.resolved_router_options(64).capacity.eval_capacity_factor, 1.5);
  // Unset keys appear in --dump-config as comments with the preset's value, so that a dumped file
  // changed to another variant does not pin the old variant's presets.
  const auto toml = c.to_toml();
  EXPECT_NE(toml.find("\nthreshold = 0.5\n"), std::string::npos);
  EXPECT_NE(toml.find("\n# hash_by = 'token'  (the variant's preset)\n"), std::string::npos);
  // Ranges are checked once, by the router option list, named by their config key.
  set_config_value(c, "moe.jitter", "2");
  EXPECT_NE(error_of([&] { c.validate(); }).find("moe.jitter must be in [0, 1), got 2"), std::string::npos);
  set_config_value(c, "moe.jitter", "0");
  set_config_value(c, "moe.hash_by", "word");
  EXPECT_NE(error_of([&] { c.validate(); }).find("moe.hash_by must be one of token or position, got 'word'"),
            std::string::npos);
  RunConfig s;
  s.model.moe.variant = "switch";
  set_config_value(s, "moe.top_k", "2");
  EXPECT_NE(error_of([&] { s.validate(); }).find("moe.top_k = 2 does not apply to variant 'switch'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { set_config_value(s, "moe.nope", "1"); }).find("unknown config key 'moe.nope'"),
            std::string::npos);
  set_config_value(s, "moe.router.nope", "1");  // a router of your own may read any setting
  EXPECT_EQ(s.model.moe.router.extra.at("nope"), "1");
}

TEST(RunConfigTest, Format1ConfigsAreMigrated) {
  // What a checkpoint of format 1 stored: every key of that time, with 0 / -1 meaning "the
  // variant's default", and keys that only some variants read. It reads as the same run.
  const std::string stored =
      "top_k = 2\ncapacity_factor = 0.0\neval_token_fraction = -1.0\naux_weight = 0.01\nz_weight = 0.0\n"
      "threshold = 0.9\nthor_eval_granularity = 'sequence'\ndeterministic_eval = true\n";
  RunConfig sw;
  apply_format1_toml(sw, "[moe]\nvariant = 'switch'\n" + stored, "old");
  EXPECT_NO_THROW(sw.validate());
  auto r = sw.model.moe.resolved_router_options(64);
  EXPECT_EQ(r.top_k, 1);
  EXPECT_DOUBLE_EQ(r.capacity.capacity_factor, 1.25);  // switch's own
  EXPECT_DOUBLE_EQ(r.capacity.eval_token_fraction, 1.0);
  EXPECT_EQ(r.eval_granularity, "token");  // format 1 read thor_eval_granularity for thor only
  EXPECT_FALSE(sw.model.moe.router.has("eval_granularity"));
  RunConfig thor;
  apply_format1_toml(thor, "[moe]\nvariant = 'thor'\n" + stored, "old");
  EXPECT_EQ(thor.model.moe.resolved_router_options(64).eval_granularity, "sequence");
  RunConfig smoe;
  apply_format1_toml(smoe, "[moe]\nvariant = 'smoe'\n" + stored, "old");
  EXPECT_FALSE(smoe.model.moe.resolved_router_options(64).sample_in_eval);  // deterministic_eval
  EXPECT_NE(error_of([&] { apply_toml(sw, "[moe]\nthor_eval_granularity = 'x'\n", "new"); }).find("unknown key"),
            std::string::npos);
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
  Json j = {{"s", "a\"b\\c\n\x01"},   {"i", int64_t{-3}}, {"d", 0.1},
            {"nan", std::nan("")},    {"b", true},        {"list", std::vector<int64_t>{1, 2}},
            {"empty", Json::object()}};
  EXPECT_EQ(json_line(j),
            R"({"s": "a\"b\\c\n\u0001", "i": -3, "d": 0.1, "nan": null, "b": true, "list": [1, 2], "empty": {}})");
  EXPECT_EQ(json_line(Json(1.0 / 3.0)), "0.3333333333333333");  // shortest round-trip form
  EXPECT_EQ(json_line(Json(1e-7)), "1e-07");
  EXPECT_EQ(Json::parse(json_line(j))["s"], "a\"b\\c\n\x01");  // reads back
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
