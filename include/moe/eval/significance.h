// Paired significance tests between translation systems, exactly as sacreBLEU 2.6.0 runs them
// (sacrebleu/significance.py): paired bootstrap resampling (Koehn 2004, "Statistical Significance
// Tests for Machine Translation Evaluation"; the Moses script's p-value with sacreBLEU's
// mean-centred deltas) and paired approximate randomization (Riezler & Maxwell 2005, "On Some
// Pitfalls in Automatic Evaluation and Significance Testing for MT"; multeval's p-value). The baseline
// comes first; every other system is compared to it, per metric: its score, the bootstrap mean and
// 95 % confidence interval, the p-value. Resampling draws with numpy's default_rng(seed)
// (moe/eval/numpy_generator.h), bootstrap statistics are float32 as in sacreBLEU, so the numbers equal
// sacreBLEU's to the last bit (tests/unit/eval/significance_test.cpp checks them against vectors from
// sacreBLEU and numpy; sacreBLEU's BLEU sums its log-precisions with CPython <= 3.11's sum(), which
// moe follows; CPython 3.12's compensated sum() can differ in the last bit).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "moe/core/json.h"
#include "moe/eval/sacrebleu.h"

namespace moe {

enum class PairedTestKind {
  kBootstrap,                 ///< --paired-bs: 1000 resamples by default
  kApproximateRandomization,  ///< --paired-ar: 10000 trials by default
};

/// A metric of the test: BLEU or chrF with its options.
using PairedMetric = std::variant<BleuOptions, ChrFOptions>;

struct PairedTestOptions {
  PairedTestKind kind = PairedTestKind::kBootstrap;
  /// Bootstrap resamples or randomization trials; 0 takes the default (1000 / 10000). At most 10^7.
  int64_t samples = 0;
  /// Approximate randomization only: bootstrap resamples for each system's confidence interval;
  /// -1 none (sacreBLEU's command line), 0 the default 1000. At most 10^7.
  int64_t ar_confidence = -1;
  /// The generator's seed; nullopt draws from the operating system (SACREBLEU_SEED=none). As in
  /// sacreBLEU, seed 0 seeds the baseline's resampling but the systems' draws come from the
  /// operating system (its `seed if seed else None`).
  std::optional<uint64_t> seed = 12345;
  void validate() const;
};

/// sacreBLEU's seed: SACREBLEU_SEED if set ("none" in any case: nullopt), else 12345. Throws a
/// one-line moe::Error naming the variable when it is neither a non-negative integer nor "none".
std::optional<uint64_t> sacrebleu_seed_from_environment();

/// One system's result for one metric (sacreBLEU's significance.Result).
struct PairedResult {
  double score = 0;               ///< the corpus score
  std::optional<double> p_value;  ///< against the baseline (absent for the baseline)
  std::optional<double> mean;     ///< bootstrap estimate of the true mean (float32 for chrF, as sacreBLEU)
  std::optional<double> ci;       ///< half-width of the 95 % interval around `mean`
};

struct PairedTestReport {
  PairedTestKind kind = PairedTestKind::kBootstrap;
  int64_t samples = 0;                    ///< resamples or trials actually run
  std::vector<std::string> systems;       ///< the baseline first, named as given
  std::vector<std::string> metric_names;  ///< "BLEU", "chrF2", "chrF2++"
  std::vector<std::string> signatures;    ///< per metric, with bs/ar and seed, e.g. "nrefs:1|bs:1000|seed:12345|…"
  std::vector<std::vector<PairedResult>> results;  ///< [metric][system]
};

/// Runs the paired test. `systems[0]` is the baseline; systems[s][i] is system s's hypothesis for
/// segment i and refs[r][i] its references. Names label the systems (sacreBLEU's CLI prefixes the
/// baseline's with "Baseline: "; format_paired_table does that). Throws moe::Error on fewer than two
/// systems, stream lengths that differ, or options out of range.
PairedTestReport paired_test(const std::vector<std::string>& names,
                             const std::vector<std::vector<std::string>>& systems, const RefStreams& refs,
                             const std::vector<PairedMetric>& metrics, const PairedTestOptions& options = {});

/// sacreBLEU's text output (`-f text`, colours off): the fancy-grid table (baseline first, per metric
/// "score (mean ± ci)" and "(p = …)" with "*" under 0.05), the test's explanation and the signatures.
std::string format_paired_table(const PairedTestReport& report, int width = 1);
/// sacreBLEU's JSON output (its default format): a list of {"system", <metric>: {score, p_value, mean,
/// ci}}, indented by 4. (sacreBLEU itself fails to write it for chrF under bootstrap: its float32 means
/// are not JSON-serializable; moe writes them as the doubles they equal.)
std::string format_paired_json(const PairedTestReport& report);

}  // namespace moe
