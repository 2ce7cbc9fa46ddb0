// The run report: report.html in the run folder, one self-contained page (inline SVG and CSS; no
// script, no network) to look at during and after training. Built from the run's own files:
// metrics.jsonl (training and validation loss and perplexity, learning rate, tokens/s, gradient norm
// over updates; per MoE layer the load per expert, drop rate, experts per token and SMoE's passes per
// token over updates), the latest expert-usage heatmaps (heatmaps/), results.json (the BLEU/chrF table)
// and config.toml. The trainer rewrites it atomically at each validation and at the end.
//
// Every chart sits at a fixed place on a fixed-width page (data-box="x y w h" on its element,
// data-page="width height" on the body), so a test can render the page headless and check that each
// one is drawn.
#pragma once

#include <string>
#include <vector>

namespace moe {

struct ReportBox {
  std::string id;  ///< "chart-loss", "chart-load-encoder.1", "heatmap-encoder.1", ...
  std::string title;
  std::string color;  ///< the first series' colour, "#rrggbb" ("" for heatmaps)
  int x = 0, y = 0, width = 0, height = 0;
};

struct RunReport {
  std::string html;
  std::vector<ReportBox> boxes;
  int page_width = 0, page_height = 0;
};

/// The report of the run in `run_dir` (whatever of its files exist so far).
RunReport build_run_report(const std::string& run_dir);
/// build_run_report written to run_dir/report.html through a temporary and a rename.
RunReport write_run_report(const std::string& run_dir);

}  // namespace moe
