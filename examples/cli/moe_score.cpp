// moe-score: BLEU and chrF exactly as sacreBLEU 2.6.0, with its command-line shape.
//   moe-score REF [REF...] -i HYP -m bleu chrf [--chrf-word-order 2] [-lc] [-w 1] [--json]
//   moe-score REF [REF...] -i BASELINE SYSTEM... --paired-bs | --paired-ar [--paired-bs-n N] [--paired-ar-n N]
// Prints "<name>|<signature> = <score>" per metric, or a JSON array with --json. With a paired test
// it prints sacreBLEU's table (baseline first; score, bootstrap mean ± 95 % CI, p-value per metric)
// or, with --json, sacreBLEU's JSON; the seed is SACREBLEU_SEED's (12345 when unset). A thin main:
// errors are one line on stderr and exit code 1.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "moe/core/error.h"
#include "moe/core/json.h"
#include "moe/core/option_fields.h"
#include "moe/data/corpus.h"
#include "moe/eval/sacrebleu.h"
#include "moe/eval/significance.h"
#include "program_errors.h"

namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MOE_CHECK(in.good(), "cannot open '", path, "'");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    // sacreBLEU reads UTF-8 and stops at an undecodable byte; so does moe-score, naming the line.
    MOE_CHECK(moe::is_valid_utf8(line), "'", path, "':", lines.size() + 1, ": invalid UTF-8: '", moe::printable(line),
              "'");
    lines.push_back(moe::rstrip_whitespace(line));
  }
  return lines;
}

std::string fixed(double value, int width) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", width, value);
  return buffer;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"BLEU and chrF, exactly as sacreBLEU 2.6.0 computes them"};
  std::vector<std::string> ref_paths;
  std::vector<std::string> hyp_paths;
  bool paired_bs = false, paired_ar = false;
  int64_t paired_bs_n = 1000, paired_ar_n = 10000;
  std::vector<std::string> metrics{"bleu"};
  int width = 1, chrf_word_order = 0;
  bool lowercase = false, json = false;
  std::string smooth = "exp";
  app.add_option("refs", ref_paths, "reference files, one segment per line")->required()->check(CLI::ExistingFile);
  app.add_option("-i,--input", hyp_paths, "hypothesis file; with a paired test the baseline, then the systems")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("-m,--metrics", metrics, "metrics: bleu, chrf")->check(CLI::IsMember({"bleu", "chrf"}));
  app.add_option("-w,--width", width, "decimals to print")->check(CLI::Range(0, 10));
  app.add_option("--chrf-word-order,--cw", chrf_word_order, "chrF word n-gram order (2 = chrF++)")
      ->check(CLI::Range(0, 10));
  app.add_option("-s,--smooth-method", smooth, "BLEU smoothing")
      ->check(CLI::IsMember({"exp", "floor", "add-k", "none"}));
  app.add_flag("--lc,--lowercase", lowercase, "lowercase before scoring");
  app.add_flag("--json", json, "print a JSON array instead of text");
  auto* bs_flag = app.add_flag("--paired-bs", paired_bs, "paired bootstrap resampling against the first -i file");
  app.add_flag("--paired-ar", paired_ar, "paired approximate randomization against the first -i file")
      ->excludes(bs_flag);
  app.add_option("--paired-bs-n", paired_bs_n, "bootstrap resamples")
      ->check(CLI::Range(int64_t{1}, int64_t{10'000'000}));
  app.add_option("--paired-ar-n", paired_ar_n, "approximate randomization trials")
      ->check(CLI::Range(int64_t{1}, int64_t{10'000'000}));
  // sacreBLEU spells two options with one dash (-cw, -lc); CLI11 wants two for long names.
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> arg_ptrs;
  for (auto& a : args) {
    if (a == "-cw" || a == "-lc" || a == "-pbs" || a == "-par" || a == "-pbsn" || a == "-parn") a = "-" + a;
    if (a == "--pbs") a = "--paired-bs";
    if (a == "--par") a = "--paired-ar";
    if (a == "--pbsn") a = "--paired-bs-n";
    if (a == "--parn") a = "--paired-ar-n";
    arg_ptrs.push_back(a.data());
  }
  CLI11_PARSE(app, argc, arg_ptrs.data());
  try {
    if (paired_bs || paired_ar) {
      // sacreBLEU: a system given again under the baseline's name is skipped; other repeats are errors.
      std::vector<std::string> names;
      for (const auto& path : hyp_paths) {
        if (!names.empty() && path == names[0]) continue;
        MOE_CHECK(std::find(names.begin(), names.end(), path) == names.end(), "'", path,
                  "' is given twice; name each system once");
        names.push_back(path);
      }
      MOE_CHECK(names.size() >= 2, "paired tests need a baseline and at least one system (-i BASE SYS...)");
      std::vector<std::vector<std::string>> systems;
      for (const auto& path : names) systems.push_back(read_lines(path));
      moe::RefStreams refs;
      for (const auto& path : ref_paths) refs.push_back(read_lines(path));
      std::vector<moe::PairedMetric> paired_metrics;
      for (const auto& metric : metrics) {
        if (metric == "bleu") {
          moe::BleuOptions o;
          o.lowercase = lowercase;
          o.smooth_method = smooth;
          paired_metrics.emplace_back(o);
        } else {
          moe::ChrFOptions o;
          o.lowercase = lowercase;
          o.word_order = chrf_word_order;
          paired_metrics.emplace_back(o);
        }
      }
      moe::PairedTestOptions options;
      options.kind = paired_bs ? moe::PairedTestKind::kBootstrap : moe::PairedTestKind::kApproximateRandomization;
      options.samples = paired_bs ? paired_bs_n : paired_ar_n;
      options.seed = moe::sacrebleu_seed_from_environment();
      const auto report = moe::paired_test(names, systems, refs, paired_metrics, options);
      std::cout << (json ? moe::format_paired_json(report) : moe::format_paired_table(report, width));
      return 0;
    }
    MOE_CHECK(hyp_paths.size() == 1, hyp_paths.size(),
              " hypothesis files given; several systems are compared with --paired-bs or --paired-ar");
    const std::string& hyp_path = hyp_paths[0];
    const auto hyps = read_lines(hyp_path);
    moe::RefStreams refs;
    for (const auto& path : ref_paths) {
      refs.push_back(read_lines(path));
      MOE_CHECK(refs.back().size() == hyps.size(), "'", path, "' has ", refs.back().size(), " lines but '", hyp_path,
                "' has ", hyps.size());
    }
    const auto nrefs = static_cast<int64_t>(refs.size());
    std::vector<std::string> json_items;
    for (const auto& metric : metrics) {
      std::string name, signature, verbose;
      double score = 0;
      if (metric == "bleu") {
        moe::BleuOptions o;
        o.lowercase = lowercase;
        o.smooth_method = smooth;
        auto s = moe::corpus_bleu(hyps, refs, o);
        name = "BLEU", signature = o.signature(nrefs), verbose = s.to_string(width), score = s.score;
      } else {
        moe::ChrFOptions o;
        o.lowercase = lowercase;
        o.word_order = chrf_word_order;
        auto s = moe::corpus_chrf(hyps, refs, o);
        name = o.name(), signature = o.signature(nrefs), verbose = s.to_string(width), score = s.score;
      }
      const std::string full = name + "|" + signature;
      if (json) {
        // sacreBLEU's per-metric JSON: the score rounded to `width` decimals, as Python's json.dumps writes it.
        moe::Json item = {{"name", name},
                          {"score", std::stod(fixed(score, width))},
                          {"signature", full},
                          {"verbose_score", verbose.substr(verbose.find(" = ") + 3)}};
        json_items.push_back(moe::json_line(item));
      } else {
        std::cout << full << " = " << verbose.substr(verbose.find(" = ") + 3) << "\n";
      }
    }
    if (json) {
      std::cout << "[";
      for (size_t i = 0; i < json_items.size(); ++i) std::cout << (i ? ",\n " : "") << json_items[i];
      std::cout << "]\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "moe-score: error: " << moe::cli::error_line(e) << "\n";
    return 1;
  }
}
