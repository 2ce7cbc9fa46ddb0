// Training reports: metrics.jsonl records, the console progress line, and expert-usage heatmaps
// (SVG: one row per language direction, one column per expert, colour = share of the direction's
// routed assignments that went to the expert).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "moe/core/json.h"

namespace moe {

/// Appends one JSON object per line to a file, flushed after each line.
class MetricsLog {
 public:
  MetricsLog() = default;
  /// append: keep existing lines (a resumed run); otherwise the file is truncated.
  MetricsLog(const std::string& path, bool append);
  void write(const Json& record);
  const std::string& path() const { return path_; }

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

/// counts[r][e]: assignments of row r to expert e. Rows are normalised to shares. Returns the SVG.
std::string expert_usage_svg(const std::string& title, const std::vector<std::string>& row_labels,
                             const std::vector<std::vector<double>>& counts);

}  // namespace moe
