// sacreBLEU's paired significance tests (moe/eval/significance.h), step for step with
// sacrebleu/significance.py: the same draws (numpy_generator.h), float32 bootstrap statistics summed
// in resample order, numpy's pairwise summation for means, and the NEP 50 arithmetic of
// sacrebleu_formulas.h. Each step names the Python it follows.
#include "moe/eval/significance.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <type_traits>
#include <variant>

#include "moe/core/error.h"
#include "moe/core/option_fields.h"
#include "moe/eval/numpy_generator.h"
#include "sacrebleu_formulas.h"

namespace moe {

using sacrebleu_detail::PyNum;

namespace {

constexpr int64_t kMaxSamples = 10'000'000;

int64_t default_samples(PairedTestKind kind) { return kind == PairedTestKind::kBootstrap ? 1000 : 10000; }

// ---- numpy array arithmetic ----------------------------------------------------------------------------

/// A 1-D numpy array of scores: float32 when every score is a numpy float32 (chrF under bootstrap),
/// else float64 (np.array of a list that mixes in Python floats is float64).
struct Scores {
  std::vector<double> values;
  bool float32 = true;
  void push(PyNum x) {
    values.push_back(x.value);
    float32 = float32 && x.float32;
  }
};

/// numpy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src, PW_BLOCKSIZE 128), as
/// np.add.reduce runs it on a contiguous array from the identity 0.
template <typename T>
T pairwise_sum(const T* a, int64_t n) {
  if (n < 8) {
    T res = 0;
    for (int64_t i = 0; i < n; ++i) res = res + a[i];
    return res;
  }
  if (n <= 128) {
    T r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] = r[j] + a[i + j];
    T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res = res + a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

/// arr.mean(): the pairwise sum divided by the count in the array's dtype.
template <typename T>
T numpy_mean(const std::vector<T>& a) {
  return static_cast<T>(pairwise_sum(a.data(), static_cast<int64_t>(a.size())) / static_cast<T>(a.size()));
}

template <typename T>
std::vector<T> as(const Scores& s) {
  return std::vector<T>(s.values.begin(), s.values.end());
}

/// significance.estimate_ci: the mean of the sorted scores and half the distance between the 1/40th
/// from each end.
template <typename T>
std::pair<double, double> estimate_ci_as(std::vector<T> scores) {
  std::sort(scores.begin(), scores.end());
  const size_t n = scores.size(), lower = n / 40, upper = n - lower - 1;
  const T ci = static_cast<T>(static_cast<T>(0.5) * (scores[upper] - scores[lower]));
  return {static_cast<double>(numpy_mean(scores)), static_cast<double>(ci)};
}

std::pair<double, double> estimate_ci(const Scores& s) {
  return s.float32 ? estimate_ci_as(as<float>(s)) : estimate_ci_as(as<double>(s));
}

/// significance._compute_p_value: (#(stats > delta) + 1) / (#stats + 1); numpy compares a float32
/// array with the Python float delta converted to float32.
template <typename T>
double p_value_as(const std::vector<T>& stats, double delta) {
  const T d = static_cast<T>(delta);
  const auto count = std::count_if(stats.begin(), stats.end(), [d](T x) { return x > d; });
  return static_cast<double>(count + 1) / static_cast<double>(stats.size() + 1);
}

/// The paired bootstrap's p-value: |sys - baseline| per resample, centred on its mean.
template <typename T>
double bootstrap_p_value_as(const std::vector<T>& sys, const std::vector<T>& base, double delta) {
  std::vector<T> diffs(sys.size());
  for (size_t i = 0; i < sys.size(); ++i) diffs[i] = std::abs(static_cast<T>(sys[i] - base[i]));
  const T mean = numpy_mean(diffs);
  for (auto& d : diffs) d = static_cast<T>(d - mean);
  return p_value_as(diffs, delta);
}

double bootstrap_p_value(const Scores& sys, const Scores& base, double delta) {
  if (sys.float32 && base.float32) return bootstrap_p_value_as(as<float>(sys), as<float>(base), delta);
  return bootstrap_p_value_as(as<double>(sys), as<double>(base), delta);
}

// ---- metrics over sufficient statistics ----------------------------------------------------------------

/// One metric's per-segment statistics of one system: rows of `width` integers.
struct SegmentStats {
  int64_t width = 0;
  std::vector<int64_t> values;  ///< [segments, width]
  std::vector<float> as_float;  ///< the same as float32 (np.array(stats, dtype='float32'))
  const int64_t* row(int64_t i) const { return values.data() + i * width; }
  const float* float_row(int64_t i) const { return as_float.data() + i * width; }
};

/// BLEU or chrF behind one interface: statistics of a system, its score from integer sums (Python
/// ints: the corpus score and approximate randomization) and from float32 sums (bootstrap).
class StatsMetric {
 public:
  explicit StatsMetric(PairedMetric metric) : metric_(std::move(metric)) {
    std::visit([](const auto& o) { o.validate(); }, metric_);
  }
  std::string name() const {
    if (std::holds_alternative<BleuOptions>(metric_)) return "BLEU";
    return std::get<ChrFOptions>(metric_).name();
  }
  std::string signature(int64_t num_refs) const {
    return std::visit([&](const auto& o) { return o.signature(num_refs); }, metric_);
  }
  int64_t width() const {
    if (std::holds_alternative<BleuOptions>(metric_)) return 10;
    const auto& o = std::get<ChrFOptions>(metric_);
    return 3 * (o.char_order + o.word_order);
  }

  SegmentStats statistics(const std::vector<std::string>& hyps, const RefStreams& refs) const {
    SegmentStats out;
    out.width = width();
    std::vector<std::string> segment_refs(refs.size());
    for (size_t i = 0; i < hyps.size(); ++i) {
      for (size_t r = 0; r < refs.size(); ++r) segment_refs[r] = refs[r][i];
      if (const auto* bleu = std::get_if<BleuOptions>(&metric_)) {
        // BLEU._extract_corpus_statistics: [hyp_len, ref_len, correct 1..4, total 1..4].
        const auto s = bleu_segment_stats(hyps[i], segment_refs, *bleu);
        out.values.insert(out.values.end(), {s.sys_len, s.ref_len});
        out.values.insert(out.values.end(), s.correct.begin(), s.correct.end());
        out.values.insert(out.values.end(), s.total.begin(), s.total.end());
      } else {
        const auto s = chrf_segment_stats(hyps[i], segment_refs, std::get<ChrFOptions>(metric_));
        out.values.insert(out.values.end(), s.begin(), s.end());
      }
    }
    out.as_float.assign(out.values.begin(), out.values.end());
    return out;
  }

  /// _compute_score_from_stats over summed statistics; `Value` is int64_t (Python ints) or float.
  template <typename Value>
  PyNum score(const Value* sums) const {
    const auto number = [](Value v) {
      return std::is_same_v<Value, float> ? PyNum::f32(static_cast<float>(v)) : PyNum::py(static_cast<double>(v));
    };
    if (const auto* bleu = std::get_if<BleuOptions>(&metric_)) {
      std::array<PyNum, 4> correct{}, total{};
      for (int n = 0; n < 4; ++n) correct[n] = number(sums[2 + n]), total[n] = number(sums[6 + n]);
      // int(stats[0]), int(stats[1]): float32 sums truncate to the integers they hold.
      return PyNum::py(sacrebleu_detail::bleu_formula(correct, total, static_cast<int64_t>(sums[0]),
                                                      static_cast<int64_t>(sums[1]), *bleu)
                           .score);
    }
    std::vector<PyNum> values(static_cast<size_t>(width()));
    for (size_t k = 0; k < values.size(); ++k) values[k] = number(sums[k]);
    return sacrebleu_detail::chrf_formula(values.data(), values.size() / 3, std::get<ChrFOptions>(metric_));
  }

  /// _aggregate_and_compute: the corpus score from every segment.
  double corpus_score(const SegmentStats& stats) const {
    std::vector<int64_t> sums(static_cast<size_t>(stats.width), 0);
    const int64_t n = stats.width ? static_cast<int64_t>(stats.values.size()) / stats.width : 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < stats.width; ++k) sums[k] += stats.row(i)[k];
    return score(sums.data()).value;
  }

 private:
  PairedMetric metric_;
};

/// `count` bootstrap resamples of every metric's statistics of the systems in `stats` ([system][metric]),
/// all indexed by one choice(n, size=(count, n)) call: each resample's rows are summed in float32 in
/// the order drawn (stats_np[idxs][r].sum(0)) and scored. Returns scores [system][metric].
std::vector<std::vector<Scores>> bootstrap_scores(NumpyGenerator& generator, int64_t count,
                                                  const std::vector<StatsMetric>& metrics,
                                                  const std::vector<std::vector<const SegmentStats*>>& stats,
                                                  int64_t segments) {
  std::vector<std::vector<Scores>> out(stats.size(), std::vector<Scores>(metrics.size()));
  auto draws = generator.choice(segments);
  std::vector<std::vector<std::vector<float>>> sums(stats.size(), std::vector<std::vector<float>>(metrics.size()));
  std::vector<int64_t> rows(static_cast<size_t>(segments));
  for (int64_t r = 0; r < count; ++r) {
    for (auto& row : rows) row = draws.next();
    for (size_t s = 0; s < stats.size(); ++s) {
      for (size_t m = 0; m < metrics.size(); ++m) {
        auto& acc = sums[s][m];
        acc.assign(static_cast<size_t>(stats[s][m]->width), 0.0f);
        for (const int64_t row : rows) {
          const float* values = stats[s][m]->float_row(row);
          for (size_t k = 0; k < acc.size(); ++k) acc[k] = acc[k] + values[k];
        }
        out[s][m].push(metrics[m].score(acc.data()));
      }
    }
  }
  return out;
}

std::unique_ptr<NumpyGenerator> make_generator(std::optional<uint64_t> seed) {
  return seed ? std::make_unique<NumpyGenerator>(*seed)
              : std::make_unique<NumpyGenerator>(NumpyGenerator::from_entropy());
}

std::string format_fixed(double value, int width) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", width, value);
  return buffer;
}

}  // namespace

void PairedTestOptions::validate() const {
  MOE_CHECK(samples >= 0 && samples <= kMaxSamples, "paired test: samples is ", samples,
            "; allowed 0 (the default) to ", kMaxSamples);
  if (kind == PairedTestKind::kBootstrap) {
    MOE_CHECK(ar_confidence == -1, "paired test: ar_confidence is ", ar_confidence,
              "; it applies to approximate randomization only (bootstrap already gives the interval); allowed -1 here");
  } else {
    MOE_CHECK(ar_confidence >= -1 && ar_confidence <= kMaxSamples, "paired test: ar_confidence is ", ar_confidence,
              "; allowed -1 (none), 0 (1000) to ", kMaxSamples);
  }
}

std::optional<uint64_t> sacrebleu_seed_from_environment() {
  const char* raw = std::getenv("SACREBLEU_SEED");
  if (raw == nullptr) return 12345;
  std::string value = raw;
  std::string lower = value;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "none") return std::nullopt;
  const bool digits = !value.empty() && value.size() <= 20 &&
                      std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isdigit(c); });
  errno = 0;
  const unsigned long long parsed = digits ? std::strtoull(value.c_str(), nullptr, 10) : 0;
  MOE_CHECK(digits && errno == 0, "SACREBLEU_SEED is '", printable(value),
            "'; allowed an integer 0..18446744073709551615 or 'none'");
  return static_cast<uint64_t>(parsed);
}

PairedTestReport paired_test(const std::vector<std::string>& names,
                             const std::vector<std::vector<std::string>>& systems, const RefStreams& refs,
                             const std::vector<PairedMetric>& metric_options, const PairedTestOptions& options) {
  options.validate();
  MOE_CHECK(systems.size() >= 2, "paired test: needs a baseline and at least one system; got ", systems.size(),
            " system(s)");
  MOE_CHECK(names.size() == systems.size(), "paired test: ", names.size(), " names for ", systems.size(), " systems");
  MOE_CHECK(!metric_options.empty(), "paired test: no metric");
  MOE_CHECK(!refs.empty(), "paired test: no reference stream");
  const auto segments = static_cast<int64_t>(systems[0].size());
  MOE_CHECK(segments >= 1, "paired test: the systems have no segment");
  for (size_t s = 0; s < systems.size(); ++s) {
    MOE_CHECK(static_cast<int64_t>(systems[s].size()) == segments, "paired test: system '", printable(names[s]),
              "' has ", systems[s].size(), " lines but '", printable(names[0]), "' has ", segments);
  }
  for (size_t r = 0; r < refs.size(); ++r) {
    MOE_CHECK(static_cast<int64_t>(refs[r].size()) == segments, "paired test: reference stream ", r + 1, " has ",
              refs[r].size(), " lines but the systems have ", segments);
  }

  std::vector<StatsMetric> metrics;
  std::set<std::string> seen;
  for (const auto& m : metric_options) {
    metrics.emplace_back(m);
    MOE_CHECK(seen.insert(metrics.back().name()).second, "paired test: metric '", metrics.back().name(),
              "' given twice; each metric name once");
  }

  const bool bootstrap = options.kind == PairedTestKind::kBootstrap;
  const int64_t samples = options.samples > 0 ? options.samples : default_samples(options.kind);
  const int64_t ar_confidence = options.ar_confidence == 0 ? 1000 : options.ar_confidence;
  // PairedTest.__call__: the systems' generators take `seed if seed else None`.
  const std::optional<uint64_t> system_seed =
      options.seed && *options.seed != 0 ? options.seed : std::optional<uint64_t>{};

  PairedTestReport report;
  report.kind = options.kind;
  report.samples = samples;
  report.systems = names;
  const std::string seed_text = options.seed ? std::to_string(*options.seed) : "none";
  for (const auto& m : metrics) {
    report.metric_names.push_back(m.name());
    // Signature.info order: nrefs, bs, ar, seed, then the metric's own fields.
    std::string sig = m.signature(static_cast<int64_t>(refs.size()));
    const size_t after_nrefs = sig.find('|');
    std::string test_fields = bootstrap ? "|bs:" + std::to_string(samples)
                                        : (ar_confidence > 0 ? "|bs:" + std::to_string(ar_confidence) : "") +
                                              "|ar:" + std::to_string(samples);
    sig.insert(after_nrefs, test_fields + "|seed:" + seed_text);
    report.signatures.push_back(sig);
  }

  // Statistics [system][metric] and corpus scores.
  std::vector<std::vector<SegmentStats>> stats(systems.size());
  for (size_t s = 0; s < systems.size(); ++s)
    for (const auto& m : metrics) stats[s].push_back(m.statistics(systems[s], refs));
  report.results.assign(metrics.size(), std::vector<PairedResult>(systems.size()));
  for (size_t m = 0; m < metrics.size(); ++m)
    for (size_t s = 0; s < systems.size(); ++s) report.results[m][s].score = metrics[m].corpus_score(stats[s][m]);

  // The baseline's interval (PairedTest.__init__ → _bootstrap_resample): a fresh default_rng(seed) per metric.
  const int64_t baseline_ci_samples = bootstrap ? samples : ar_confidence;
  if (baseline_ci_samples > 0) {
    for (size_t m = 0; m < metrics.size(); ++m) {
      auto generator = make_generator(options.seed);
      const auto scores = bootstrap_scores(*generator, baseline_ci_samples, {metrics[m]}, {{&stats[0][m]}}, segments);
      std::tie(report.results[m][0].mean, report.results[m][0].ci) = estimate_ci(scores[0][0]);
    }
  }

  for (size_t s = 1; s < systems.size(); ++s) {
    auto generator = make_generator(system_seed);
    if (bootstrap) {
      // _paired_bs_test: one choice(n, size=(samples, n)) shared by every metric.
      std::vector<std::vector<const SegmentStats*>> pair(2);
      for (size_t m = 0; m < metrics.size(); ++m) pair[0].push_back(&stats[0][m]), pair[1].push_back(&stats[s][m]);
      const auto scores = bootstrap_scores(*generator, samples, metrics, pair, segments);
      for (size_t m = 0; m < metrics.size(); ++m) {
        auto& result = report.results[m][s];
        const double delta = std::abs(report.results[m][0].score - result.score);
        std::tie(result.mean, result.ci) = estimate_ci(scores[1][m]);
        result.p_value = bootstrap_p_value(scores[1][m], scores[0][m], delta);
      }
      continue;
    }
    // _paired_ar_test: integers(2, size=(samples, n), dtype=bool) picks, per trial and segment, which
    // system's statistics go to pseudo-system a (the baseline's where true) and which to b. Sums stay
    // integers: a = Σ sys + Σ_true (base - sys), b = Σ base - Σ_true (base - sys).
    std::vector<std::vector<int64_t>> base_sum(metrics.size()), sys_sum(metrics.size()), delta_sum(metrics.size());
    for (size_t m = 0; m < metrics.size(); ++m) {
      const int64_t w = stats[0][m].width;
      base_sum[m].assign(static_cast<size_t>(w), 0);
      sys_sum[m].assign(static_cast<size_t>(w), 0);
      delta_sum[m].assign(static_cast<size_t>(w), 0);
      for (int64_t i = 0; i < segments; ++i)
        for (int64_t k = 0; k < w; ++k) base_sum[m][k] += stats[0][m].row(i)[k], sys_sum[m][k] += stats[s][m].row(i)[k];
    }
    std::vector<std::vector<double>> abs_diffs(metrics.size());
    {
      auto bits = generator->bools();
      std::vector<int64_t> a, b;
      for (int64_t t = 0; t < samples; ++t) {
        for (auto& d : delta_sum) std::fill(d.begin(), d.end(), 0);
        for (int64_t i = 0; i < segments; ++i) {
          if (!bits.next()) continue;
          for (size_t m = 0; m < metrics.size(); ++m) {
            const int64_t* base_row = stats[0][m].row(i);
            const int64_t* sys_row = stats[s][m].row(i);
            for (size_t k = 0; k < delta_sum[m].size(); ++k) delta_sum[m][k] += base_row[k] - sys_row[k];
          }
        }
        for (size_t m = 0; m < metrics.size(); ++m) {
          a.resize(base_sum[m].size());
          b.resize(base_sum[m].size());
          for (size_t k = 0; k < a.size(); ++k) {
            a[k] = sys_sum[m][k] + delta_sum[m][k];
            b[k] = base_sum[m][k] - delta_sum[m][k];
          }
          abs_diffs[m].push_back(std::abs(metrics[m].score(a.data()).value - metrics[m].score(b.data()).value));
        }
      }
    }  // the bool stream ends here: numpy drops the last word's unused bits
    for (size_t m = 0; m < metrics.size(); ++m) {
      auto& result = report.results[m][s];
      result.p_value = p_value_as(abs_diffs[m], std::abs(report.results[m][0].score - result.score));
    }
    if (ar_confidence > 0) {
      // The same generator then draws choice(n, size=(ar_confidence, n)) for the system's interval.
      std::vector<std::vector<const SegmentStats*>> single(1);
      for (size_t m = 0; m < metrics.size(); ++m) single[0].push_back(&stats[s][m]);
      const auto scores = bootstrap_scores(*generator, ar_confidence, metrics, single, segments);
      for (size_t m = 0; m < metrics.size(); ++m)
        std::tie(report.results[m][s].mean, report.results[m][s].ci) = estimate_ci(scores[0][m]);
    }
  }
  return report;
}

// ---- sacreBLEU's output ---------------------------------------------------------------------------------

namespace {

size_t code_points(const std::string& s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t end; (end = s.find('\n', start)) != std::string::npos; start = end + 1)
    lines.push_back(s.substr(start, end - start));
  lines.push_back(s.substr(start));
  return lines;
}

std::string repeat(const std::string& piece, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += piece;
  return out;
}

/// Python's format(s, '^w') (tabulate's _padboth): the odd space goes right.
std::string centre(const std::string& s, size_t width) {
  const size_t pad = width > code_points(s) ? width - code_points(s) : 0;
  return std::string(pad / 2, ' ') + s + std::string(pad - pad / 2, ' ');
}

std::string right(const std::string& s, size_t width) {
  const size_t pad = width > code_points(s) ? width - code_points(s) : 0;
  return std::string(pad, ' ') + s;
}

}  // namespace

std::string format_paired_table(const PairedTestReport& report, int width) {
  MOE_CHECK(width >= 0 && width <= 10, "paired table: width is ", width, "; allowed 0..10");
  // utils._format_score_lines: "score (mean ± ci)" and, on a second line, "(p = …)" with "*" at p <= 0.05.
  std::vector<std::string> headers{"System"};
  std::vector<std::vector<std::string>> columns(1);
  for (size_t s = 0; s < report.systems.size(); ++s)
    columns[0].push_back(s == 0 ? "Baseline: " + report.systems[s] : report.systems[s]);
  bool has_mean = false;
  for (size_t m = 0; m < report.metric_names.size(); ++m) {
    std::vector<std::string> cells;
    for (const auto& r : report.results[m]) {
      std::string cell = format_fixed(r.score, width);
      if (r.mean) {
        has_mean = true;
        cell += " (" + format_fixed(*r.mean, width) + " ± " + format_fixed(*r.ci, width) + ")";
      }
      if (r.p_value) cell += "\n(p = " + format_fixed(*r.p_value, 4) + ")" + (*r.p_value > 0.05 ? "" : "*");
      cells.push_back(cell);
    }
    headers.push_back(report.metric_names[m] + (has_mean ? " (μ ± 95% CI)" : ""));
    columns.push_back(cells);
  }
  // tabulate(tablefmt='fancy_grid', colalign=('right',), stralign='center'): a column is as wide as its
  // widest line or its header plus 2; each line is padded by one space on both sides.
  std::vector<size_t> widths;
  for (size_t c = 0; c < columns.size(); ++c) {
    size_t w = code_points(headers[c]) + 2;
    for (const auto& cell : columns[c])
      for (const auto& line : split_lines(cell)) w = std::max(w, code_points(line));
    widths.push_back(w);
  }
  const auto align = [&](size_t c, const std::string& text) {
    return c == 0 ? right(text, widths[c]) : centre(text, widths[c]);
  };
  const auto rule = [&](const char* left, const char* fill, const char* mid, const char* end) {
    std::string line = left;
    for (size_t c = 0; c < widths.size(); ++c) line += (c ? mid : "") + repeat(fill, widths[c] + 2);
    return line + end + "\n";
  };
  const auto row = [&](const std::vector<std::string>& cells) {
    std::vector<std::vector<std::string>> lines;
    size_t height = 1;
    for (const auto& cell : cells) lines.push_back(split_lines(cell)), height = std::max(height, lines.back().size());
    std::string out;
    for (size_t l = 0; l < height; ++l) {
      out += "│";
      for (size_t c = 0; c < cells.size(); ++c) out += " " + align(c, l < lines[c].size() ? lines[c][l] : "") + " │";
      out += "\n";
    }
    return out;
  };
  std::string out = rule("╒", "═", "╤", "╕") + row(headers) + rule("╞", "═", "╪", "╡");
  for (size_t s = 0; s < report.systems.size(); ++s) {
    std::vector<std::string> cells;
    for (const auto& column : columns) cells.push_back(column[s]);
    out += row(cells);
    out += s + 1 < report.systems.size() ? rule("├", "─", "┼", "┤") : rule("╘", "═", "╧", "╛");
  }
  out += "\n";
  // utils.print_results_table: the paired test's explanation, then the signatures.
  const bool bs = report.kind == PairedTestKind::kBootstrap;
  const std::string msg = std::string("Paired ") + (bs ? "bootstrap resampling" : "approximate randomization") +
                          " test with " + std::to_string(report.samples) + (bs ? " resampling trials" : " trials");
  out += std::string(msg.size(), '-') + "\n" + msg + "\n" + std::string(msg.size(), '-') + "\n";
  out += " - Each system is pairwise compared to Baseline: " + report.systems[0] + ".\n";
  out += bs ? "   Actual system score / bootstrap estimated true mean / 95% CI are provided for each metric.\n"
            : "   Actual system score is provided for each metric.\n";
  out +=
      "\n"
      " - Null hypothesis: the system and the baseline translations are essentially\n"
      "   generated by the same underlying process. For a given system and the baseline,\n"
      "   the p-value is roughly the probability of the absolute score difference (delta)\n"
      "   or higher occurring due to chance, under the assumption that the null hypothesis is correct.\n"
      "\n"
      " - Assuming a significance threshold of 0.05, the null hypothesis can be rejected\n"
      "   for p-values < 0.05 (marked with \"*\"). This means that the delta is unlikely to be attributed\n"
      "   to chance, hence the system is significantly \"different\" than the baseline.\n"
      "   Otherwise, the p-values are highlighted in red.\n"
      "\n"
      " - NOTE: Significance does not tell whether a system is \"better\" than the baseline but rather\n"
      "   emphasizes the \"difference\" of the systems in terms of the replicability of the delta.\n"
      "\n"
      "-----------------\n"
      "Metric signatures\n"
      "-----------------\n";
  for (size_t m = 0; m < report.metric_names.size(); ++m) {
    std::string name = report.metric_names[m];
    if (code_points(name) < 10) name += std::string(10 - code_points(name), ' ');
    out += " - " + name + " " + report.signatures[m] + "\n";
  }
  return out;
}

std::string format_paired_json(const PairedTestReport& report) {
  const auto optional = [](const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); };
  Json out = Json::array();
  for (size_t s = 0; s < report.systems.size(); ++s) {
    Json item;
    item["system"] = s == 0 ? "Baseline: " + report.systems[s] : report.systems[s];
    for (size_t m = 0; m < report.metric_names.size(); ++m) {
      const auto& r = report.results[m][s];
      item[report.metric_names[m]] = {
          {"score", r.score}, {"p_value", optional(r.p_value)}, {"mean", optional(r.mean)}, {"ci", optional(r.ci)}};
    }
    out.push_back(item);
  }
  // json.dumps(indent=4): ensure_ascii escapes non-ASCII.
  return out.dump(4, ' ', true) + "\n";
}

}  // namespace moe
