// Fault injection (docs/reliability.md says which promise each test proves): non-finite updates are
// skipped and bounded and never checkpointed; SIGTERM checkpoints and a resumed run equals an
// uninterrupted one; a second signal exits at once; a kill between the step checkpoint and
// best.moeckpt is repaired on resume; later checkpoints are set aside, not deleted; the launcher
// passes signals on and leaves no process behind; every resource-sized option has a bound; bad input
// gets one clear line (no stack trace), also in the run's train.log; killed data preparation leaves
// no temporaries. Every case is a few seconds of CPU (tiny models on the default corpus).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "errors.h"
#include "moe/core/json.h"
#include "moe/train/checkpoint_file.h"
#include "moe/train/run_checkpoint.h"
#include "moe/train/trainer.h"
#include "programs.h"
#include "scratch.h"
#include "test_paths.h"

namespace moe {
namespace {

namespace fs = std::filesystem;
using moe::testing::error_of;
using moe::testing::run;

#define SKIP_WITHOUT_DEFAULT_CORPUS()                                                \
  do {                                                                               \
    static const std::string missing = moe::testing::default_corpus_missing();       \
    if (!missing.empty()) GTEST_SKIP() << "default corpus unavailable: " << missing; \
  } while (0)

std::string bin(const std::string& program) { return (fs::path(moe::testing::kBinDir) / program).string(); }
std::string tiny() { return (fs::path(moe::testing::kSourceDir) / "configs" / "tiny.toml").string(); }
const std::string& cache() {
  static const std::string dir = moe::testing::scratch("reliability_cache").string();
  return dir;
}
// moe-train on the tiny config in `dir`, quietly, one thread.
std::string train_cmd(const std::string& dir) {
  return bin("moe-train") + " --config " + tiny() + " --run_dir " + dir + " --data.cache_dir " + cache() +
         " --log_level warn --train.threads 1 --no-eval";
}
std::vector<std::string> train_argv(const std::string& dir, const std::vector<std::string>& extra) {
  std::vector<std::string> a{bin("moe-train"), "--config",    tiny(), "--run_dir",       dir, "--data.cache_dir",
                             cache(),          "--log_level", "warn", "--train.threads", "1", "--no-eval"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

RunConfig tiny_config(const std::string& name) {
  RunConfig c;
  apply_toml_file(c, tiny());
  c.run_dir = moe::testing::scratch(name).string();
  c.data.cache_dir = cache();
  c.log_level = "warn";
  c.train.threads = 1;
  c.eval.enabled = false;
  return c;
}

// The records of one type in a run's metrics.jsonl.
std::vector<Json> records(const std::string& dir, const std::string& type) {
  std::vector<Json> out;
  std::ifstream in(dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = Json::parse(line, nullptr, false);
    if (j.is_object() && j.value("type", "") == type) out.push_back(j);
  }
  return out;
}

std::map<int64_t, double> train_losses(const std::string& dir) {
  std::map<int64_t, double> out;
  for (const auto& r : records(dir, "train")) out[r["step"].get<int64_t>()] = r["last_loss"].get<double>();
  return out;
}

bool finite_model(const std::string& checkpoint) {
  try {
    load_model_checkpoint(checkpoint);  // refuses non-finite parameters
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Polls until the run's metrics show step >= `step` (or the time runs out).
bool wait_for_step(const std::string& dir, int64_t step, double timeout_s) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < end) {
    const auto losses = train_losses(dir);
    if (!losses.empty() && losses.rbegin()->first >= step) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// ---- non-finite updates ---------------------------------------------------------------------------

TEST(Reliability, NonFiniteUpdatesAreSkippedCountedAndNeverAdvanceTheStep) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  auto c = tiny_config("nan_skip");
  c.train.max_steps = 10;
  c.train.log_every = 1;
  int poisoned = 0;  // the 5th update is poisoned twice, then succeeds
  Trainer::update_fault_hook() = [&poisoned](int64_t update) { return update == 5 && poisoned++ < 2; };
  Trainer t(c);
  t.train();
  Trainer::update_fault_hook() = nullptr;
  EXPECT_EQ(t.step(), 10);
  ASSERT_EQ(t.history().size(), 10u);  // ten real updates; the two poisoned attempts are not among them
  for (const auto& r : t.history()) EXPECT_TRUE(std::isfinite(r.loss)) << r.step;
  const auto skipped = records(c.run_dir, "skipped");
  ASSERT_EQ(skipped.size(), 2u);
  EXPECT_EQ(skipped[0]["update"], 5);
  EXPECT_EQ(skipped[1]["in_a_row"], 2);
  int64_t reported = 0;
  for (const auto& r : records(c.run_dir, "train")) reported += r["skipped_updates"].get<int64_t>();
  EXPECT_EQ(reported, 2);
  EXPECT_TRUE(finite_model(step_checkpoint_path(c.run_dir, 10)));
}

TEST(Reliability, TooManyNonFiniteUpdatesStopTheRunNamingTheLastGoodCheckpoint) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  auto c = tiny_config("nan_stop");
  c.train.max_steps = 12;
  c.train.checkpoint_every = 4;
  c.train.max_skipped_updates = 3;
  Trainer::update_fault_hook() = [](int64_t update) { return update >= 6; };
  Trainer t(c);
  const auto msg = error_of([&] { t.train(); });
  Trainer::update_fault_hook() = nullptr;
  EXPECT_NE(msg.find("3 updates in a row after step 5 had a non-finite loss or gradient"), std::string::npos) << msg;
  EXPECT_NE(msg.find("The last good checkpoint is " + step_checkpoint_path(c.run_dir, 4) + " (step 4)"),
            std::string::npos)
      << msg;
  EXPECT_EQ(t.step(), 5);
}

// The issue's reproduction: a run that diverges (lr 1e30) stops with an error, and keep_last never
// removes a finite checkpoint in favour of a non-finite one (none is written).
TEST(Reliability, ADivergingRunKeepsItsFiniteCheckpoints) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  const auto dir = moe::testing::scratch("diverge").string();
  auto [rc, out] = run(train_cmd(dir) + " --train.max_steps 6 --train.checkpoint_every 2 --train.keep_last 3");
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) = run(train_cmd(dir) +
                          " --train.max_steps 16 --train.checkpoint_every 2 --train.keep_last 3 --resume"
                          " --train.lr 1e30 --train.clip_norm 0");
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("had a non-finite loss or gradient"), std::string::npos) << out;
  EXPECT_NE(out.find("The last good checkpoint is " + step_checkpoint_path(dir, 6)), std::string::npos) << out;
  const auto list = list_step_checkpoints(dir);
  ASSERT_FALSE(list.empty());
  for (const auto& [step, path] : list) {
    EXPECT_LE(step, 7) << path;
    EXPECT_TRUE(finite_model(path)) << path;
  }
  EXPECT_NE(moe::testing::slurp_file(dir + "/train.log").find("[error] [train] 5 updates in a row"), std::string::npos);
}

// ---- signals ----------------------------------------------------------------------------------------

TEST(Reliability, SigtermCheckpointsAndTheResumedRunEqualsAnUninterruptedOne) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  const std::vector<std::string> common{"--train.max_steps",        "30", "--train.log_every",      "1",
                                        "--train.checkpoint_every", "10", "--train.validate_every", "10"};
  const auto full = moe::testing::scratch("sigterm_full").string(), cut = moe::testing::scratch("sigterm_cut").string();
  ASSERT_EQ(moe::testing::wait_for(moe::testing::spawn(train_argv(full, common), full + ".log"), 300), 0);
  const pid_t pid = moe::testing::spawn(train_argv(cut, common), cut + ".log");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(wait_for_step(cut, 13, 120)) << moe::testing::slurp_file(cut + ".log");
  ::kill(pid, SIGTERM);
  EXPECT_EQ(moe::testing::wait_for(pid, 120), 128 + SIGTERM);
  const auto log = moe::testing::slurp_file(cut + ".log");
  const auto stopped = train_losses(cut).rbegin()->first;
  EXPECT_NE(log.find("stopped by SIGTERM at step " + std::to_string(stopped)), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(step_checkpoint_path(cut, stopped))) << log;
  EXPECT_LT(stopped, 30);
  auto resume = train_argv(cut, common);
  resume.push_back("--resume");
  ASSERT_EQ(moe::testing::wait_for(moe::testing::spawn(resume, cut + ".resume.log"), 300), 0)
      << moe::testing::slurp_file(cut + ".resume.log");
  const auto a = train_losses(full), b = train_losses(cut);
  ASSERT_EQ(a.size(), 30u);
  ASSERT_EQ(b.size(), 30u);
  for (const auto& [step, loss] : a) EXPECT_EQ(b.at(step), loss) << "step " << step;  // bit for bit
}

TEST(Reliability, ASecondSignalExitsAtOnce) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  const auto dir = moe::testing::scratch("two_signals").string();
  const pid_t pid = moe::testing::spawn(
      train_argv(dir, {"--train.max_steps", "100000", "--train.log_every", "1", "--train.checkpoint_every", "100000"}),
      dir + ".log");
  ASSERT_TRUE(wait_for_step(dir, 2, 120));
  // Both signals wait while the process is stopped, and are handled one after the other when it goes
  // on: the first asks for a stop, the second ends the process before any checkpoint is written.
  ::kill(pid, SIGSTOP);
  ::kill(pid, SIGINT);
  ::kill(pid, SIGTERM);
  ::kill(pid, SIGCONT);
  const int code = moe::testing::wait_for(pid, 30);
  EXPECT_TRUE(code == 128 + SIGTERM || code == 128 + SIGINT) << code;
  if (code == 128 + SIGTERM) {  // the usual order: SIGINT's handler first, then SIGTERM's exits
    EXPECT_TRUE(list_step_checkpoints(dir).empty());
    EXPECT_EQ(moe::testing::slurp_file(dir + ".log").find("stopped by"), std::string::npos);
  }
}

TEST(Reliability, KillBetweenTheStepCheckpointAndBestIsRepairedOnResume) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  const auto dir = moe::testing::scratch("best_kill").string();
  // Validation and checkpoints every 4 updates; killed while writing best.moeckpt the 2nd time (step 8).
  const std::string worker = bin("moe_fault_worker");
  auto [rc, out] = run(worker + " " + tiny() + " " + dir + " " + cache() + " 8 4 best.moeckpt 2");
  ASSERT_EQ(rc, 42) << out;
  ASSERT_TRUE(fs::exists(step_checkpoint_path(dir, 8)));
  EXPECT_EQ(read_checkpoint_step(dir + "/best.moeckpt"), 4);  // stale: the kill came first
  std::tie(rc, out) = run(worker + " " + tiny() + " " + dir + " " + cache() + " 8 4 none 1 latest");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(read_checkpoint_step(dir + "/best.moeckpt"), 8);  // the best validation recorded
  EXPECT_NE(out.find("best.moeckpt holds step 4 but the best validation recorded is at step 8"), std::string::npos)
      << out;
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(Reliability, ResumingFromAnOlderCheckpointSetsTheLaterOnesAside) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  const auto dir = moe::testing::scratch("set_aside").string();
  const auto cmd = train_cmd(dir) + " --train.checkpoint_every 2 --train.keep_last 10 --train.log_every 1";
  auto [rc, out] = run(cmd + " --train.max_steps 8");
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) = run(cmd + " --train.max_steps 8 --resume " + step_checkpoint_path(dir, 4));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("2 checkpoint(s) after the resumed step 4 (up to step 8) moved to"), std::string::npos) << out;
  std::string aside;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("set-aside-", 0) == 0) aside = e.path().string();
  ASSERT_FALSE(aside.empty());
  EXPECT_TRUE(fs::exists(aside + "/checkpoint-6.moeckpt"));
  EXPECT_TRUE(fs::exists(aside + "/checkpoint-8.moeckpt"));
  EXPECT_EQ(moe::testing::slurp_file(aside + "/metrics.jsonl").find("\"step\": 8") != std::string::npos, true);
  EXPECT_EQ(read_checkpoint_step(step_checkpoint_path(dir, 8)), 8);  // written again by the resumed run
  // --discard-later deletes instead.
  std::tie(rc, out) = run(cmd + " --train.max_steps 8 --discard-later --resume " + step_checkpoint_path(dir, 6));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("--discard-later"), std::string::npos) << out;
}

// ---- the launcher -------------------------------------------------------------------------------------

TEST(Reliability, TheLauncherPassesSignalsOnAndNoRankOutlivesIt) {
  for (int sig : {SIGHUP, SIGKILL}) {
    const auto marker = "1000." + std::to_string(sig) + std::to_string(::getpid());  // sleep's argument, unique
    const auto dir = moe::testing::scratch("launcher_" + std::to_string(sig)).string();
    const pid_t launcher =
        moe::testing::spawn({bin("moe-launch"), "--nproc", "2", "--", "sleep", marker}, dir + ".log");
    ASSERT_GT(launcher, 0);
    for (int i = 0; i < 200 && !moe::testing::process_running("sleep " + marker); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(moe::testing::process_running("sleep " + marker));
    ::kill(launcher, sig);
    EXPECT_EQ(moe::testing::wait_for(launcher, 30), 128 + sig);
    bool gone = false;
    for (int i = 0; i < 250 && !gone; ++i) {
      gone = !moe::testing::process_running("sleep " + marker);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(gone) << "ranks outlived the launcher after signal " << sig;
  }
}

TEST(Reliability, EveryRankCheckpointsTogetherOnSigtermUnderTheLauncher) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  const auto dir = moe::testing::scratch("launch_sigterm").string();
  auto argv = train_argv(dir, {"--train.max_steps", "100000", "--train.log_every", "1", "--train.checkpoint_every",
                               "100000", "--train.validate_every", "100000", "--parallel.backend", "gloo",
                               "--parallel.expert_parallel_size", "2", "--parallel.timeout_s", "60"});
  argv.insert(argv.begin(), {bin("moe-launch"), "--nproc", "2", "--"});
  const pid_t launcher = moe::testing::spawn(argv, dir + ".log");
  ASSERT_TRUE(wait_for_step(dir, 3, 180)) << moe::testing::slurp_file(dir + ".log");
  ::kill(launcher, SIGTERM);
  EXPECT_EQ(moe::testing::wait_for(launcher, 180), 128 + SIGTERM) << moe::testing::slurp_file(dir + ".log");
  const auto log = moe::testing::slurp_file(dir + ".log");
  const auto list = list_step_checkpoints(dir);
  ASSERT_EQ(list.size(), 1u) << log;
  EXPECT_TRUE(fs::exists(dir + "/checkpoint-" + std::to_string(list.back().first) + ".experts-1-of-2.moeckpt"));
  EXPECT_NE(log.find("stopped by SIGTERM at step " + std::to_string(list.back().first)), std::string::npos) << log;
  EXPECT_EQ(log.find("frame #"), std::string::npos) << log;
}

// ---- bounds -------------------------------------------------------------------------------------------

TEST(Reliability, EveryResourceSizedOptionHasABound) {
  const auto dir = moe::testing::scratch("bounds").string();
  auto check = [](const std::string& cmd, const std::string& expected) {
    auto [rc, out] = run(cmd);
    EXPECT_NE(rc, 0) << cmd;
    EXPECT_NE(out.find(expected), std::string::npos) << cmd << "\n" << out;
    EXPECT_LT(out.size(), 600u) << "one line expected: " << out;
  };
  const auto train = bin("moe-train") + " --config " + tiny() + " --run_dir " + dir + "/run --dump-config";
  check(train + " --train.threads 100000", "train.threads must be in [0, 1024], got 100000");
  check(train + " --data.max_tokens 100000000", "data.max_tokens must be in [3, 4194304], got 100000000");
  check(train + " --tokenizer.vocab_size 100000000", "tokenizer.vocab_size must be in [300, 1048576]");
  check(train + " --model.encoder_layers 100000", "model.encoder_layers must be in [1, 256], got 100000");
  check(train + " --moe.num_experts 100000", "moe.num_experts must be in [1, 4096], got 100000");
  check(train + " --train.update_freq 100000", "train.update_freq must be in [1, 4096], got 100000");
  check(train + " --eval.beam 100000", "eval.beam must be in [1, 64], got 100000");
  check(train + " --train.lr nan", "train.lr: expected a finite number, got 'nan'");
  check(train + " --train.max_minutes inf", "train.max_minutes: expected a finite number, got 'inf'");
  check(bin("moe-launch") + " --nproc 100000 -- true", "LaunchOptions.nproc must be in [1, 256]");
  const auto translate = bin("moe-translate") + " --checkpoint " + dir + "/none.moeckpt --target de";
  check(translate + " --beam 100000", "BeamSearchOptions.beam must be in [1, 64], got 100000");
  check(translate + " --lenpen nan", "BeamSearchOptions.lenpen must be in [0, 10], got nan");
  check(translate + " --max-len-b 100000000", "BeamSearchOptions.max_len_b must be in [1, 4096]");
}

// ---- bad input ------------------------------------------------------------------------------------------

TEST(Reliability, BadConfigurationsGetOneClearLine) {
  const auto dir = moe::testing::scratch("bad_config").string();
  auto check = [](const std::string& cmd, const std::string& expected) {
    auto [rc, out] = run(cmd);
    EXPECT_EQ(rc, 1) << cmd;
    EXPECT_NE(out.find(expected), std::string::npos) << cmd << "\n" << out;
    EXPECT_EQ(out.find("frame #"), std::string::npos) << out;
    EXPECT_LT(out.size(), 2500u) << out.substr(0, 300);
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  };
  const auto train = bin("moe-train") + " --dump-config";
  std::ofstream(dir + "/empty.toml") << "  \n";
  check(train + " --config " + dir, "config file '" + dir + "' is not a regular file");
  check(train + " --config " + dir + "/empty.toml", "is empty; it should set at least one key");
  check(train + " --config ''", "--config: the file name is empty");
  check(train + " --config " + dir + "/missing.toml", "cannot be read (it does not exist)");
  // A 1 MB value is cut, with a count of what was cut; binary garbage and a byte-order mark are named.
  std::ofstream(dir + "/huge.toml") << "[moe]\nvariant = \"" << std::string(1 << 20, 'x') << "\"\n";
  check(train + " --config " + dir + "/huge.toml", "more bytes)");
  check(train + " --moe.variant \"$(printf '\\357\\273\\277gshard')\"", "moe.variant='<BOM>gshard' is neither");
  check(train + " --moe.variant \"$(printf '\\001\\377')\"", "moe.variant='\\x01\\xFF' is neither");
  check(train + " --train.device cuda:x", "train.device must be cpu, cuda or cuda:N, got 'cuda:x'");
  if (!torch::cuda::is_available())
    check(bin("moe-train") + " --config " + tiny() + " --run_dir " + dir + "/r --train.device cuda:0",
          "train.device = cuda:0: this LibTorch has no usable CUDA");
}

TEST(Reliability, BadDataAndCheckpointsGetOneClearLine) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  const auto dir = moe::testing::scratch("bad_data").string();
  auto check = [](const std::pair<int, std::string>& r, const std::string& expected) {
    EXPECT_EQ(r.first, 1) << r.second;
    EXPECT_NE(r.second.find(expected), std::string::npos) << r.second;
    EXPECT_EQ(r.second.find("frame #"), std::string::npos) << r.second;
    EXPECT_EQ(r.second.find("Exception raised from"), std::string::npos) << r.second;
  };
  // Corpora: a blank line and a NUL-only line are errors naming the file and line.
  for (const auto& [name, line] :
       std::vector<std::pair<std::string, std::string>>{{"blank", "  "}, {"nul", std::string(1, '\0')}}) {
    const auto root = dir + "/" + name;
    fs::create_directories(root + "/en-de");
    for (const char* split : {"train", "valid", "test"}) {
      std::ofstream(root + "/en-de/" + split + ".en") << "one\ntwo\n";
      std::ofstream(root + "/en-de/" + split + ".de") << "eins\n" << line << "\n";
    }
    check(run(train_cmd(dir + "/run_" + name) + " --data.corpus folder --data.root " + root + " --data.languages de"),
          name == "blank" ? "train.de' line 2 is blank" : "train.de' line 2 contains a NUL byte");
    // The run folder exists by then: the error is in its train.log too.
    EXPECT_NE(moe::testing::slurp_file(dir + "/run_" + name + "/train.log").find("[error]"), std::string::npos);
  }
  // A file where the cache folder should be.
  std::ofstream(dir + "/a_file") << "x";
  check(run(bin("moe-train") + " --config " + tiny() + " --run_dir " + dir + "/r2 --data.cache_dir " + dir + "/a_file"),
        "data.cache_dir '" + dir + "/a_file' is not a folder");
  // A trained checkpoint, then forged and poisoned copies of it.
  const auto run_dir = dir + "/good";
  auto [rc, out] = run(train_cmd(run_dir) + " --train.max_steps 2");
  ASSERT_EQ(rc, 0) << out;
  const auto good = step_checkpoint_path(run_dir, 2);
  const auto translate = bin("moe-translate") + " --target de --checkpoint ";
  check(run("printf 'ok\\n\\377\\376\\n' | " + translate + good), "stdin:2: invalid UTF-8");
  check(run(translate + dir), "is a folder, not a checkpoint file");
  write_checkpoint_file(dir + "/forged.moeckpt", "not an archive at all, but a valid header and checksum");
  check(run("echo hi | " + translate + dir + "/forged.moeckpt"), "moe-translate: error:");
  auto opened = open_run_checkpoint(good);
  for (auto& [k, v] : opened.state)
    if (k.find("encoder.0.self_attn") != std::string::npos && v.is_floating_point()) v = v.clone().fill_(std::nan(""));
  save_run_checkpoint(dir + "/nan", 2, opened.state, {}, false, 10);
  check(run("echo hi | " + translate + step_checkpoint_path(dir + "/nan", 2)), "holds non-finite parameters");
  // moe-score refuses invalid UTF-8 as sacreBLEU does.
  std::ofstream(dir + "/ref.txt") << "a b\n";
  std::ofstream(dir + "/hyp.txt") << "a \xff\n";
  check(run(bin("moe-score") + " " + dir + "/ref.txt -i " + dir + "/hyp.txt"), "hyp.txt':1: invalid UTF-8");
}

TEST(Reliability, AKilledDataPreparationLeavesNoTemporaries) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  const auto dir = moe::testing::scratch("stale_tmp");
  const auto cache_dir = dir / "cache";
  fs::create_directories(cache_dir / "tokenizers");
  // What a data build killed on the way leaves, named after its (dead) process.
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const auto p = std::to_string(dead);
  fs::create_directories(cache_dir / ("gettext-0123456789ab.tmp." + p) / "en-de");
  std::ofstream(cache_dir / ("spm-input." + p + ".txt")) << "text\n";
  std::ofstream(cache_dir / "tokenizers" / ("spm-feedfeedfeedfeed.tmp" + p + ".model")) << "x";
  // ... and what a live process may be writing right now (pid 1 is always alive) is left alone.
  std::ofstream(cache_dir / "spm-input.1.txt") << "in use\n";
  auto c = tiny_config("stale_tmp_run");
  c.data.cache_dir = cache_dir.string();
  c.train.max_steps = 1;
  Trainer t(c);
  EXPECT_FALSE(fs::exists(cache_dir / ("gettext-0123456789ab.tmp." + p)));
  EXPECT_FALSE(fs::exists(cache_dir / ("spm-input." + p + ".txt")));
  EXPECT_FALSE(fs::exists(cache_dir / "tokenizers" / ("spm-feedfeedfeedfeed.tmp" + p + ".model")));
  EXPECT_TRUE(fs::exists(cache_dir / "spm-input.1.txt"));
}

}  // namespace
}  // namespace moe
