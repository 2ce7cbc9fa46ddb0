// Training reports: metrics.jsonl records, the console progress line, the MoE statistics of a
// reporting window (per layer and per language direction), and expert-usage heatmaps (SVG: one row
// per language direction, one column per expert, colour = share of the direction's routed
// assignments that went to the expert).
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "moe/core/json.h"
#include "moe/layers/moe_stats.h"
#include "moe/models/transformer.h"

namespace moe {

/// One update's record.
struct StepRecord {
  int64_t step = 0;
  double loss = 0;         ///< label-smoothed CE per target token (nats; THOR: mean of the two passes)
  double nll = 0;          ///< NLL per target token (nats)
  double aux = 0;          ///< combined MoE aux loss (token-weighted mean over micro-batches)
  double consistency = 0;  ///< THOR: consistency term per token (unweighted)
  double lr = 0;
  double grad_norm = 0;
  int64_t tokens = 0;    ///< target tokens in the update
  bool skipped = false;  ///< the loss or a gradient was not finite: no update was made (step not advanced)
  double seconds = 0;    ///< wall time of the update (forward, backward, gradient sums, optimizer step)
};

/// The update loop's progress: a window of StepRecords, reported as one line (rewritten in place on a
/// terminal, a log line otherwise) and one "train" record for metrics.jsonl.
class ProgressReport {
 public:
  /// elapsed_before: seconds a resumed run trained before; tty: rewrite the line in place.
  ProgressReport(int64_t max_steps, double max_minutes, double elapsed_before, bool tty);
  void add(const StepRecord& record);
  /// Prints the line of the window (mean loss, tokens/s, eta) and returns its metrics record (with
  /// the updates skipped for a non-finite loss); starts a new window.
  Json report();
  /// Ends an in-place line (before other output).
  void end_line();

 private:
  int64_t max_steps_;
  double max_minutes_, elapsed_before_;
  bool tty_, line_open_ = false;
  std::chrono::steady_clock::time_point start_, last_;
  StepRecord last_record_;
  int64_t steps_ = 0, window_steps_ = 0, window_tokens_ = 0, window_skipped_ = 0;
  double window_loss_ = 0, window_nll_ = 0;
};

/// Appends one JSON object per line to a file (json_line), flushed after each line.
class MetricsLog {
 public:
  MetricsLog() = default;
  /// append: keep existing lines (a resumed run); otherwise the file is truncated.
  MetricsLog(const std::string& path, bool append);
  void write(const Json& record);
  const std::string& path() const { return path_; }
  /// Keeps the records of steps <= `step` (a resumed run drops what a crashed run logged after its
  /// checkpoint; lines cut short by the crash go too). Writes a new file and renames it over the old
  /// one, so a kill during this leaves either the old history or the new one, never a partial file;
  /// the whole old file is first copied into `set_aside_dir` when given.
  static void keep_steps_up_to(const std::string& path, int64_t step, const std::string& set_aside_dir = "");

 private:
  std::string path_;
  std::ofstream out_;
};

/// "step 120/1000 [######------] loss 5.123 ppl 80.2 lr 3.0e-04 2345 tok/s eta 3m12s". The bar shows
/// `fraction` of the run (by steps, or by time under a time budget); negative = step / max_steps.
std::string progress_line(int64_t step, int64_t max_steps, double loss, double ppl, double lr, double tokens_per_s,
                          double eta_seconds, int width = 24, double fraction = -1);
/// "1h02m", "3m12s", "45s".
std::string format_duration(double seconds);

/// MoE statistics over a reporting window: per layer, every call's statistics merged (merge_stats);
/// per language direction and layer, the rows each expert processed. Aux losses are not kept (they
/// would hold the autograd graph).
class MoEStatsWindow {
 public:
  void add(const std::vector<LayerStats>& stats, const std::string& direction);
  bool empty() const { return layers_.empty(); }
  /// Per layer, the merged statistics of the window.
  const std::map<std::string, MoEStats>& layers() const { return layers_; }
  /// layer -> direction -> rows per expert ([E] fp64 CPU).
  std::map<std::string, std::map<std::string, at::Tensor>> usage_by_layer() const;
  /// Logs one line per layer and one per direction, returns the metrics record
  /// {"type": "moe", "step", "layers", "language_usage"}, and empties the window.
  Json report(int64_t step);

 private:
  std::map<std::string, MoEStats> layers_;
  std::map<std::string, std::map<std::string, at::Tensor>> usage_;  ///< direction -> layer -> counts
};

/// One heatmap per MoE layer (rows = directions) in `dir`, named step<N>-<layer>.svg.
void write_usage_heatmaps(const std::string& dir, const std::string& title_prefix, int64_t step,
                          const std::map<std::string, std::map<std::string, at::Tensor>>& usage_by_layer);

/// counts[r][e]: assignments of row r to expert e. Rows are normalised to shares. Returns the SVG.
std::string expert_usage_svg(const std::string& title, const std::vector<std::string>& row_labels,
                             const std::vector<std::vector<double>>& counts);

}  // namespace moe
