// The translation trainer end to end on the tiny config (the default gettext corpus): the loss
// falls, a resumed run repeats an uninterrupted one exactly, a kill during a checkpoint write leaves
// the previous checkpoint loadable, the command-line programs (moe-train, moe-translate, moe-score)
// work and fail cleanly, corpus errors are reported, and a short real-data run on Multi30k (when
// ../shared/data/multi30k exists).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "errors.h"
#include "moe/data/corpus.h"
#include "moe/eval/sacrebleu.h"
#include "moe/train/checkpoint_file.h"
#include "moe/train/trainer.h"
#include "programs.h"
#include "scratch.h"
#include "test_paths.h"

namespace moe {
namespace {

namespace fs = std::filesystem;
using moe::testing::error_of;

#define SKIP_WITHOUT_DEFAULT_CORPUS()                                                \
  do {                                                                               \
    static const std::string missing = moe::testing::default_corpus_missing();       \
    if (!missing.empty()) GTEST_SKIP() << "default corpus unavailable: " << missing; \
  } while (0)

const std::string& shared_cache() {
  static const std::string dir = moe::testing::scratch("translation_cache").string();
  return dir;
}

RunConfig tiny_config(const std::string& name) {
  RunConfig c;
  apply_toml_file(c, (fs::path(moe::testing::kSourceDir) / "configs" / "tiny.toml").string());
  c.run_dir = moe::testing::scratch(name).string();
  c.data.cache_dir = shared_cache();
  c.log_level = "warn";
  c.train.threads = 1;  // ctest runs tests in parallel; OpenMP oversubscription costs 10x
  return c;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

using moe::testing::run;

std::string bin(const std::string& program) { return (fs::path(moe::testing::kBinDir) / program).string(); }

TEST(TranslationTrainingTest, TinyConfigTrainsLossFallsAndEvaluates) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  auto c = tiny_config("tiny_trains");
  c.train.max_steps = 60;
  Trainer trainer(c);
  auto first = trainer.validate();
  trainer.train();
  const auto& h = trainer.history();
  ASSERT_EQ(h.size(), 60u);
  double early = 0, late = 0;
  for (int i = 0; i < 5; ++i) {
    early += h[static_cast<size_t>(i)].loss;
    late += h[h.size() - 1 - static_cast<size_t>(i)].loss;
  }
  EXPECT_LT(late, early * 0.8) << "training loss did not fall: " << early / 5 << " -> " << late / 5;
  auto last = trainer.validate();
  EXPECT_LT(last.loss, first.loss - 0.5);
  auto result = trainer.evaluate();
  ASSERT_EQ(result.directions.size(), 4u);  // en-de, de-en, en-fr, fr-en
  for (const auto& d : result.directions) {
    EXPECT_EQ(d.sentences, 40);
    // The hypothesis and reference files rescore to the reported numbers.
    const auto ref_file = c.run_dir + "/ref." + d.source + "-" + d.target + ".txt";
    const auto hyps = read_text_lines(d.hypothesis_file), refs = read_text_lines(ref_file);
    ASSERT_EQ(hyps.size(), 40u);
    EXPECT_NEAR(corpus_bleu(hyps, {refs}).score, d.bleu, 1e-9);
    EXPECT_NEAR(corpus_chrf(hyps, {refs}).score, d.chrf2, 1e-9);
    EXPECT_NE(d.bleu_signature.find("tok:13a"), std::string::npos);
  }
  EXPECT_GT(result.parameters.total, result.parameters.active);
  const auto results = slurp(c.run_dir + "/results.json");
  EXPECT_NE(results.find("\"en-de\""), std::string::npos);
  EXPECT_NE(results.find("\"active_parameters\""), std::string::npos);
  const auto metrics = slurp(c.run_dir + "/metrics.jsonl");
  EXPECT_NE(metrics.find("\"type\": \"moe\""), std::string::npos);
  EXPECT_NE(metrics.find("\"language_usage\""), std::string::npos);
  EXPECT_NE(metrics.find("\"type\": \"valid\""), std::string::npos);
  EXPECT_TRUE(fs::exists(c.run_dir + "/heatmaps/step20-encoder.1.svg"));
  EXPECT_TRUE(fs::exists(c.run_dir + "/best.moeckpt"));
  EXPECT_EQ(list_step_checkpoints(c.run_dir).size(), 2u);  // keep_last = 2
}

class ResumeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ResumeTest, ResumedRunRepeatsTheUninterruptedOneExactly) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  const std::string variant = GetParam();
  auto c = tiny_config("resume_full_" + variant);
  c.model.moe.variant = variant;
  c.model.moe.strata = "2,2";  // smoe: the tiny config has 4 experts
  c.train.max_steps = 24;
  c.train.validate_every = 8;  // validation (which draws random numbers in MoE eval) before the cut
  c.train.checkpoint_every = 8;
  c.eval.enabled = false;
  std::vector<StepRecord> full;
  {
    Trainer t(c);
    t.train();
    full = t.history();
  }
  auto c2 = c;
  c2.run_dir = moe::testing::scratch("resume_cut_" + variant).string();
  c2.train.max_steps = 16;
  {
    Trainer t(c2);
    t.train();
  }
  c2.train.max_steps = 24;
  Trainer resumed(c2, "latest");
  EXPECT_EQ(resumed.step(), 16);
  resumed.train();
  const auto& tail = resumed.history();
  ASSERT_EQ(tail.size(), 8u);
  for (size_t i = 0; i < tail.size(); ++i) {
    EXPECT_EQ(tail[i].step, full[16 + i].step);
    EXPECT_EQ(tail[i].loss, full[16 + i].loss) << "step " << tail[i].step;  // bitwise
    EXPECT_EQ(tail[i].grad_norm, full[16 + i].grad_norm) << "step " << tail[i].step;
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, ResumeTest, ::testing::Values("gshard", "thor", "smoe"),
                         [](const auto& p) { return p.param; });

// Batches drawn ahead on the prefetch thread train exactly as batches drawn inline, and a run cut
// while the thread is ahead resumes where the trainer was, not where the thread was.
TEST(TranslationTrainingTest, PrefetchedBatchesTrainAndResumeExactlyAsInline) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  auto config = [](const std::string& name, int64_t prefetch) {
    auto c = tiny_config(name);
    c.data.prefetch = prefetch;
    c.train.max_steps = 12;
    c.train.validate_every = 100;
    c.train.checkpoint_every = 6;
    c.eval.enabled = false;
    return c;
  };
  auto run = [](const RunConfig& c, bool resume) {
    Trainer t(c, resume ? "latest" : "");
    t.train();
    return t.history();
  };
  const auto inline_draws = run(config("prefetch_inline", 0), false);
  const auto ahead = run(config("prefetch_ahead", 8), false);
  ASSERT_EQ(inline_draws.size(), 12u);
  ASSERT_EQ(ahead.size(), 12u);
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(ahead[i].tokens, inline_draws[i].tokens) << i;
    EXPECT_EQ(ahead[i].loss, inline_draws[i].loss) << i;  // bitwise
  }
  auto cut = config("prefetch_cut", 8);
  cut.train.max_steps = 6;
  run(cut, false);
  cut.train.max_steps = 12;
  const auto tail = run(cut, true);
  ASSERT_EQ(tail.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(tail[i].loss, inline_draws[6 + i].loss) << "step " << tail[i].step;
}

TEST(TranslationTrainingTest, FreshRunRefusesAFolderWithCheckpointsAndResumeChecksTheConfig) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  auto c = tiny_config("refuse");
  c.train.max_steps = 2;
  c.eval.enabled = false;
  {
    Trainer t(c);
    t.train();
  }
  EXPECT_NE(error_of([&] { Trainer t(c); }).find("already holds checkpoints"), std::string::npos);
  auto changed = c;
  changed.model.d_model = 32;
  EXPECT_NE(error_of([&] { Trainer t(changed, "latest"); }).find("--resume: model.d_model is 32 but the checkpoint"),
            std::string::npos);
}

TEST(TranslationTrainingTest, KillDuringCheckpointWriteLeavesThePreviousCheckpointLoadable) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  auto c = tiny_config("kill_write");
  c.train.max_steps = 6;
  c.train.validate_every = 6;
  c.eval.enabled = false;
  {
    Trainer t(c);
    t.train();
  }
  const auto good = step_checkpoint_path(c.run_dir, 6);
  const auto payload = read_checkpoint_file(good);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // no LibTorch work in the child: only the file writes, killed halfway
    set_checkpoint_write_hook([](const std::string&) { ::_exit(42); });
    write_checkpoint_file(step_checkpoint_path(c.run_dir, 12), payload + payload);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_EQ(WEXITSTATUS(status), 42);
  const pid_t child2 = ::fork();  // and again while overwriting best.moeckpt in place
  ASSERT_GE(child2, 0);
  if (child2 == 0) {
    set_checkpoint_write_hook([](const std::string&) { ::_exit(43); });
    write_checkpoint_file(c.run_dir + "/best.moeckpt", payload + "x");
    ::_exit(0);
  }
  ASSERT_EQ(::waitpid(child2, &status, 0), child2);
  ASSERT_EQ(WEXITSTATUS(status), 43);
  auto list = list_step_checkpoints(c.run_dir);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list.back().first, 6);
  EXPECT_EQ(load_model_checkpoint(c.run_dir + "/best.moeckpt").step, 6);
  bool leftover = false;
  for (const auto& e : fs::directory_iterator(c.run_dir))
    leftover |= e.path().filename().string().find(".tmp.") != std::string::npos;
  EXPECT_TRUE(leftover) << "the killed writes should have left their temporary files";
  c.train.max_steps = 8;
  Trainer resumed(c, "latest");
  EXPECT_EQ(resumed.step(), 6);
  for (const auto& e : fs::directory_iterator(c.run_dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  resumed.train();
  EXPECT_EQ(resumed.step(), 8);
}

TEST(TranslationTrainingTest, CommandLinePrograms) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  const auto dir = moe::testing::scratch("cli").string();
  const std::string config = (fs::path(moe::testing::kSourceDir) / "configs" / "tiny.toml").string();
  const std::string common = " --config " + config + " --run_dir " + dir + "/run --data.cache_dir " + shared_cache();
  // --dump-config prints the resolved TOML with the overrides applied.
  auto [rc, out] = run(bin("moe-train") + common + " --model.d_model 32 --dump-config");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("d_model = 32"), std::string::npos);
  EXPECT_NE(out.find("[moe]\nvariant = 'gshard'"), std::string::npos);
  // Unknown keys and bad values: one line, non-zero exit.
  std::ofstream(dir + "/bad.toml") << "[model]\nd_modl = 3\n";
  std::tie(rc, out) = run(bin("moe-train") + " --config " + dir + "/bad.toml");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("moe-train: error: config file '" + dir + "/bad.toml':2: unknown key 'model.d_modl'"),
            std::string::npos)
      << out;
  std::tie(rc, out) = run(bin("moe-train") + common + " --train.lr -1");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("train.lr must be > 0"), std::string::npos) << out;
  // Train a few steps, then translate and score.
  std::tie(rc, out) =
      run(bin("moe-train") + common + " --train.max_steps 6 --log_level warn --data.max_test_sentences 5");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("run folder: " + dir + "/run"), std::string::npos);
  std::ofstream(dir + "/in.txt") << "Open file\nSave the document as\nQuit\n";
  std::tie(rc, out) = run(bin("moe-translate") + " --checkpoint " + dir + "/run/best.moeckpt --target de --beam 2 -i " +
                          dir + "/in.txt -o " + dir + "/out.txt");
  ASSERT_EQ(rc, 0) << out;
  std::ifstream hyp(dir + "/out.txt");
  int lines = 0;
  for (std::string l; std::getline(hyp, l);) ++lines;
  EXPECT_EQ(lines, 3);
  std::tie(rc, out) =
      run("printf 'Open file\\n' | " + bin("moe-translate") + " --checkpoint " + dir + "/run/best.moeckpt --target fr");
  EXPECT_EQ(rc, 0) << out;
  std::tie(rc, out) = run(bin("moe-score") + " " + dir + "/in.txt -i " + dir + "/in.txt -m bleu chrf");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 100.0"), std::string::npos)
      << out;
  // A missing language tag and a corrupted checkpoint: one clear line, exit code 1.
  std::tie(rc, out) =
      run(bin("moe-translate") + " --checkpoint " + dir + "/run/best.moeckpt --target xx -i " + dir + "/in.txt");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("moe-translate: error:"), std::string::npos) << out;
  {
    std::fstream f(dir + "/run/best.moeckpt", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-5, std::ios::end);
    f.put('\x7f');
  }
  std::tie(rc, out) =
      run(bin("moe-translate") + " --checkpoint " + dir + "/run/best.moeckpt --target de -i " + dir + "/in.txt");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("corrupted (checksum mismatch)"), std::string::npos) << out;
}

TEST(TranslationTrainingTest, PatienceStopsARunThatNoLongerImproves) {
  SKIP_WITHOUT_DEFAULT_CORPUS();
  auto c = tiny_config("patience");
  // A learning rate too small to change any fp32 weight: every validation after the first ties.
  c.train.lr = 1e-30;
  c.train.warmup_init_lr = 0;
  c.train.max_steps = 20;
  c.train.validate_every = 2;
  c.train.checkpoint_every = 2;
  c.train.patience = 2;
  c.eval.enabled = false;
  Trainer t(c);
  t.train();
  EXPECT_EQ(t.step(), 6);  // best at 2, then 4 and 6 without improvement
  const auto metrics = slurp(c.run_dir + "/metrics.jsonl");
  EXPECT_NE(metrics.find("\"type\": \"early_stop\", \"step\": 6, \"patience\": 2"), std::string::npos) << metrics;
  EXPECT_NE(slurp(c.run_dir + "/train.log").find("early stop: 2 validations without improvement"), std::string::npos);
  c.data.max_test_sentences = 5;
  c.eval.beam = 1;
  auto r = t.evaluate();
  EXPECT_NE(r.document["stop_reason"].get<std::string>().find("early stop"), std::string::npos);
}

TEST(TranslationTrainingTest, FolderCorpusErrorsNameTheFile) {
  const auto root = moe::testing::scratch("bad_corpus").string();
  fs::create_directories(root + "/en-de");
  std::ofstream(root + "/en-de/train.en") << "a\nb\n";
  std::ofstream(root + "/en-de/train.de") << "x\n";
  auto c = tiny_config("bad_corpus_run");
  c.data.corpus = "folder";
  c.data.root = root;
  c.data.languages = "de";
  const auto msg = error_of([&] { Trainer t(c); });
  EXPECT_NE(msg.find("train"), std::string::npos) << msg;
  EXPECT_NE(msg, "no error");
}

TEST(TranslationTrainingTest, Multi30kShortRealDataRun) {
  const char* shared = std::getenv("MOE_SHARED_DATA");
  const fs::path root = fs::path(shared ? shared : "") / "multi30k";
  if (shared == nullptr || !fs::exists(root / "train.en")) GTEST_SKIP() << "no ../shared/data/multi30k";
  RunConfig c;
  apply_toml_file(c, (fs::path(moe::testing::kSourceDir) / "configs" / "multi30k-xmoe.toml").string());
  c.run_dir = moe::testing::scratch("multi30k_short").string();
  c.data.root = root.string();
  c.data.cache_dir = shared_cache();
  c.data.max_train_pairs = 3000;
  c.data.max_valid_sentences = 50;
  c.data.max_test_sentences = 30;
  c.tokenizer.vocab_size = 1000;
  c.model.d_model = 64;
  c.model.ffn_hidden = 128;
  c.model.heads = 4;
  c.model.encoder_layers = c.model.decoder_layers = 2;
  c.model.moe.expert_hidden = 32;
  c.train.max_steps = 30;
  c.train.max_minutes = 0;
  c.train.warmup = 10;
  c.train.lr = 3e-3;
  c.data.max_tokens = 1500;
  c.eval.beam = 2;
  c.log_level = "warn";
  Trainer t(c);
  auto before = t.validate();
  t.train();
  EXPECT_LT(t.validate().loss, before.loss);
  auto r = t.evaluate();
  EXPECT_EQ(r.directions.size(), 4u);  // en<->de, en<->fr
  for (const auto& d : r.directions) EXPECT_EQ(d.sentences, 30);
}

}  // namespace
}  // namespace moe
