// Paired significance tests and the numpy generator under them, against vectors computed with
// sacreBLEU 2.6.0 and numpy 2 from PyPI (tests/data/significance/, written by
// tests/support/make_significance_vectors.py): SeedSequence pools and states, PCG64's raw output,
// Generator.choice and integers(2, dtype=bool) streams; the paired bootstrap and approximate
// randomization results (score, bootstrap mean, 95 % CI, p-value) to the last bit for BLEU, chrF and
// chrF++ under two seeds; sacreBLEU's text table and JSON byte for byte; moe-score --paired-bs and
// --paired-ar against sacreBLEU's command line.
#include "moe/eval/significance.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "errors.h"
#include "moe/core/json.h"
#include "moe/eval/numpy_generator.h"
#include "programs.h"
#include "test_paths.h"

namespace moe {
namespace {

std::string data_dir() { return std::string(testing::kSourceDir) + "/tests/data/significance"; }

std::string read_text(const std::string& name) {
  std::ifstream in(data_dir() + "/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<std::string> read_lines(const std::string& name) {
  std::vector<std::string> lines;
  std::istringstream in(read_text(name));
  for (std::string line; std::getline(in, line);) lines.push_back(rstrip_whitespace(line));
  return lines;
}

Json read_json(const std::string& name) { return Json::parse(read_text(name)); }

void expect_error(const std::function<void()>& fn, const std::string& part) {
  const std::string message = testing::error_of(fn);
  EXPECT_NE(message.find(part), std::string::npos) << message;
}

uint64_t u64(const Json& decimal) { return std::stoull(decimal.get<std::string>()); }

TEST(NumpyGeneratorTest, SeedSequenceAndPcg64MatchNumpy) {
  const auto vectors = read_json("numpy_generator.json");
  for (const auto& c : vectors["seed_sequence"]) {
    const auto seq = SeedSequence::from_integer(u64(c["seed"]));
    std::vector<uint32_t> pool;
    for (const auto& w : c["pool"]) pool.push_back(w.get<uint32_t>());
    EXPECT_EQ(seq.pool(), pool) << "seed " << c["seed"];
    const auto state = seq.generate_state_u64(4);
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(state[i], u64(c["state_u64"][i])) << "seed " << c["seed"];
  }
  for (const auto& c : vectors["pcg64"]) {
    Pcg64 bits(SeedSequence::from_integer(u64(c["seed"])));
    for (const auto& expected : c["uint64"]) EXPECT_EQ(bits.next_uint64(), u64(expected)) << "seed " << c["seed"];
  }
}

TEST(NumpyGeneratorTest, ChoiceMatchesNumpyIncludingLemireRejections) {
  for (const auto& c : read_json("numpy_generator.json")["choice"]) {
    NumpyGenerator generator(c["seed"].get<uint64_t>());
    const auto n = c["n"].get<int64_t>();
    const auto values = generator.choice(n, c["rows"].get<int64_t>() * c["cols"].get<int64_t>());
    ASSERT_EQ(values.size(), c["values"].size());
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_EQ(values[i], c["values"][i].get<int64_t>()) << "n " << n << " draw " << i;
    }
  }
}

TEST(NumpyGeneratorTest, BoolsThenChoiceShareTheGeneratorState) {
  for (const auto& c : read_json("numpy_generator.json")["bools_then_choice"]) {
    NumpyGenerator generator(c["seed"].get<uint64_t>());
    const auto n = c["n"].get<int64_t>();
    std::string bits;
    {
      auto draws = generator.bools();
      for (int64_t i = 0; i < c["rows"].get<int64_t>() * n; ++i) bits += draws.next() ? '1' : '0';
    }
    EXPECT_EQ(bits, c["bits"].get<std::string>());
    const auto values = generator.choice(n, c["conf"].get<int64_t>() * n);
    for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(values[i], c["values"][i].get<int64_t>()) << i;
  }
}

std::vector<PairedMetric> metric_set(const std::string& name) {
  if (name == "bleu-lc-floor") {
    BleuOptions bleu;
    bleu.lowercase = true;
    bleu.smooth_method = "floor";
    return {bleu};
  }
  ChrFOptions chrf_pp;
  chrf_pp.word_order = 2;
  return {BleuOptions{}, ChrFOptions{}, chrf_pp};
}

struct Texts {
  std::vector<std::string> names{"base.txt", "sysA.txt", "sysB.txt"};
  std::vector<std::vector<std::string>> systems{read_lines("base.txt"), read_lines("sysA.txt"), read_lines("sysB.txt")};
  RefStreams refs{read_lines("ref.txt")};
};

void expect_same(const std::optional<double>& actual, const Json& expected, const std::string& what) {
  if (expected.is_null()) {
    EXPECT_FALSE(actual.has_value()) << what;
  } else {
    ASSERT_TRUE(actual.has_value()) << what;
    EXPECT_EQ(*actual, expected.get<double>()) << what;  // bit for bit
  }
}

TEST(PairedTestTest, EqualsSacreBleuToTheLastBit) {
  const Texts texts;
  for (const auto& c : read_json("paired_api.json")) {
    PairedTestOptions options;
    options.kind = c["test"] == "bs" ? PairedTestKind::kBootstrap : PairedTestKind::kApproximateRandomization;
    options.samples = c["samples"].get<int64_t>();
    options.ar_confidence = c["ar_confidence"].get<int64_t>();
    options.seed = std::stoull(c["seed"].get<std::string>());
    const auto report = paired_test(texts.names, texts.systems, texts.refs, metric_set(c["metrics"]), options);
    const std::string label = c["test"].get<std::string>() + " seed " + c["seed"].get<std::string>() + " ";
    size_t m = 0;
    for (const auto& [metric, signature] : c["signatures"].items()) {
      ASSERT_LT(m, report.metric_names.size());
      EXPECT_EQ(report.metric_names[m], metric);
      EXPECT_EQ(report.signatures[m], signature.get<std::string>());
      const auto& expected = c["results"][metric];
      for (size_t s = 0; s < texts.systems.size(); ++s) {
        const auto& r = report.results[m][s];
        const std::string what = label + metric + " " + texts.names[s];
        EXPECT_EQ(r.score, expected[s]["score"].get<double>()) << what;
        expect_same(r.p_value, expected[s]["p_value"], what + " p_value");
        expect_same(r.mean, expected[s]["mean"], what + " mean");
        expect_same(r.ci, expected[s]["ci"], what + " ci");
      }
      ++m;
    }
    EXPECT_EQ(m, report.metric_names.size());
  }
}

TEST(PairedTestTest, TextTableAndJsonAreSacreBleusOutput) {
  const Texts texts;
  PairedTestOptions bs;
  const auto bleu_chrf = std::vector<PairedMetric>{BleuOptions{}, ChrFOptions{}};
  EXPECT_EQ(format_paired_table(paired_test(texts.names, texts.systems, texts.refs, bleu_chrf, bs), 1),
            read_text("cli_bs.txt"));
  EXPECT_EQ(format_paired_json(paired_test(texts.names, texts.systems, texts.refs, {BleuOptions{}}, bs)),
            read_text("cli_bs_bleu.json"));
  PairedTestOptions ar;
  ar.kind = PairedTestKind::kApproximateRandomization;
  EXPECT_EQ(format_paired_table(paired_test(texts.names, texts.systems, texts.refs, bleu_chrf, ar), 2),
            read_text("cli_ar.txt"));
  ChrFOptions chrf_pp;
  chrf_pp.word_order = 2;
  ar.samples = 2000;
  EXPECT_EQ(format_paired_json(paired_test(texts.names, texts.systems, texts.refs, {BleuOptions{}, chrf_pp}, ar)),
            read_text("cli_ar.json"));
}

TEST(PairedTestTest, BadInputIsOneLineNamingTheValue) {
  const Texts texts;
  const std::vector<PairedMetric> bleu{BleuOptions{}};
  expect_error([&] { paired_test({"base"}, {texts.systems[0]}, texts.refs, bleu); }, "at least one system");
  auto short_system = texts.systems[1];
  short_system.pop_back();
  expect_error(
      [&] {
        paired_test({"a", "b"}, {texts.systems[0], short_system}, texts.refs, bleu);
      },
      "system 'b' has 102 lines but 'a' has 103");
  PairedTestOptions options;
  options.samples = 20'000'000;
  expect_error(
      [&] {
        paired_test({"a", "b"}, {texts.systems[0], texts.systems[1]}, texts.refs, bleu, options);
      },
      "samples is 20000000; allowed 0 (the default) to 10000000");
  expect_error(
      [&] {
        paired_test({"a", "b"}, {texts.systems[0], texts.systems[1]}, texts.refs, {BleuOptions{}, BleuOptions{}});
      },
      "metric 'BLEU' given twice");
  ::setenv("SACREBLEU_SEED", "12x", 1);
  expect_error([] { sacrebleu_seed_from_environment(); }, "SACREBLEU_SEED is '12x'; allowed an integer");
  ::setenv("SACREBLEU_SEED", "NONE", 1);
  EXPECT_FALSE(sacrebleu_seed_from_environment().has_value());
  ::setenv("SACREBLEU_SEED", "7", 1);
  EXPECT_EQ(sacrebleu_seed_from_environment(), std::optional<uint64_t>(7));
  ::unsetenv("SACREBLEU_SEED");
  EXPECT_EQ(sacrebleu_seed_from_environment(), std::optional<uint64_t>(12345));
}

TEST(PairedTestTest, MoeScoreCommandLineMatchesSacreBleus) {
  const std::string score = std::string(testing::kBinDir) + "/moe-score";
  const std::string in_data = "cd '" + data_dir() + "' && SACREBLEU_SEED=12345 ";
  auto [code, out] = testing::run(in_data + score + " ref.txt -i base.txt sysA.txt sysB.txt -m bleu chrf --paired-bs");
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, read_text("cli_bs.txt"));
  std::tie(code, out) =
      testing::run(in_data + score + " ref.txt -i base.txt sysA.txt sysB.txt -m bleu chrf --paired-ar -w 2");
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, read_text("cli_ar.txt"));
  std::tie(code, out) = testing::run(in_data + score +
                                     " ref.txt -i base.txt sysA.txt sysB.txt -m bleu chrf --chrf-word-order 2"
                                     " --paired-ar --paired-ar-n 2000 --json");
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, read_text("cli_ar.json"));
  std::tie(code, out) = testing::run(in_data + score + " ref.txt -i base.txt --paired-bs");
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("moe-score: error: paired tests need a baseline and at least one system (-i BASE SYS...)"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace moe
