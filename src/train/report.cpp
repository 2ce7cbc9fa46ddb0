// Metrics log, progress line and expert-usage heatmaps (see moe/train/report.h).
#include "moe/train/report.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "moe/core/error.h"
#include "moe/core/logging.h"

namespace moe {

MetricsLog::MetricsLog(const std::string& path, bool append)
    : path_(path), out_(path, append ? std::ios::app : std::ios::trunc) {
  MOE_CHECK(out_.good(), "metrics: cannot open ", path, " for writing");
}

void MetricsLog::write(const Json& record) {
  if (!out_.is_open()) return;
  out_ << json_line(record) << '\n';
  out_.flush();
}

void MetricsLog::keep_steps_up_to(const std::string& path, int64_t step, const std::string& set_aside_dir) {
  std::ifstream in(path);
  if (!in.good()) return;
  std::error_code ec;
  if (!set_aside_dir.empty())
    std::filesystem::copy_file(path, std::filesystem::path(set_aside_dir) / "metrics.jsonl",
                               std::filesystem::copy_options::overwrite_existing, ec);
  std::vector<std::string> keep;
  for (std::string line; std::getline(in, line);) {
    const auto record = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object() || !record.contains("step") || !record["step"].is_number_integer()) continue;  // cut short
    if (record["step"].get<int64_t>() <= step) keep.push_back(line);
  }
  in.close();
  const auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& l : keep) out << l << '\n';
    out.flush();
    MOE_CHECK(out.good(), "metrics: cannot write ", tmp);
  }
  std::filesystem::rename(tmp, path, ec);
  MOE_CHECK(!ec, "metrics: cannot replace ", path, ": ", ec.message());
}

ProgressReport::ProgressReport(int64_t max_steps, double max_minutes, double elapsed_before, bool tty)
    : max_steps_(max_steps),
      max_minutes_(max_minutes),
      elapsed_before_(elapsed_before),
      tty_(tty),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

void ProgressReport::add(const StepRecord& record) {
  if (record.skipped) {
    ++window_skipped_;
    return;
  }
  last_record_ = record;
  ++steps_;
  ++window_steps_;
  window_tokens_ += record.tokens;
  window_loss_ += record.loss;
  window_nll_ += record.nll;
}

Json ProgressReport::report() {
  const auto now = std::chrono::steady_clock::now();
  const double dt = std::chrono::duration<double>(now - last_).count();
  const double session = std::chrono::duration<double>(now - start_).count();
  const double tps = static_cast<double>(window_tokens_) / std::max(dt, 1e-9);
  const int64_t step = last_record_.step;
  double eta = session / static_cast<double>(std::max<int64_t>(steps_, 1)) * static_cast<double>(max_steps_ - step);
  double fraction = static_cast<double>(step) / static_cast<double>(max_steps_);
  if (max_minutes_ > 0) {  // under a time budget the bar and the eta follow the time spent
    const double budget = max_minutes_ * 60.0, spent = elapsed_before_ + session;
    eta = std::min(eta, budget - spent);
    fraction = std::max(fraction, spent / budget);
  }
  const double n = static_cast<double>(std::max<int64_t>(window_steps_, 1));
  const double loss = window_loss_ / n, nll = window_nll_ / n;
  const auto line = progress_line(step, max_steps_, loss, std::exp(nll), last_record_.lr, tps, eta, 24, fraction);
  if (tty_) {
    std::fprintf(stderr, "\r%s\033[K", line.c_str());
    std::fflush(stderr);
    line_open_ = true;
  } else {
    log_info("[train] " + line);
  }
  const int64_t skipped = window_skipped_;
  window_steps_ = window_tokens_ = window_skipped_ = 0;
  window_loss_ = window_nll_ = 0;
  last_ = now;
  const auto& r = last_record_;
  return {{"type", "train"},
          {"step", step},
          {"loss", loss},
          {"nll", nll},
          {"ppl", std::exp(nll)},
          {"last_loss", r.loss},
          {"aux", r.aux},
          {"consistency", r.consistency},
          {"lr", r.lr},
          {"grad_norm", r.grad_norm},
          {"tokens", r.tokens},
          {"tokens_per_s", tps},
          {"elapsed_s", elapsed_before_ + session},
          {"skipped_updates", skipped}};
}

void ProgressReport::end_line() {
  if (!line_open_) return;
  std::fprintf(stderr, "\n");
  line_open_ = false;
}

void MoEStatsWindow::add(const std::vector<LayerStats>& stats, const std::string& direction) {
  for (const auto& s : stats) {
    auto counts = s.stats;
    counts.aux_losses.clear();
    auto it = layers_.find(s.name);
    layers_[s.name] = it == layers_.end() ? merge_stats({counts}) : merge_stats({it->second, counts});
    // Summed on the statistics' device; read once per report (train.stats_every), not per micro-batch.
    auto tpe = s.stats.tokens_per_expert.detach().to(at::kDouble);
    auto& u = usage_[direction][s.name];
    u = u.defined() ? u + tpe : tpe;
  }
}

std::map<std::string, std::map<std::string, at::Tensor>> MoEStatsWindow::usage_by_layer() const {
  std::map<std::string, std::map<std::string, at::Tensor>> out;
  for (const auto& [direction, per_layer] : usage_)
    for (const auto& [layer, counts] : per_layer) out[layer][direction] = counts.cpu();
  return out;
}

Json MoEStatsWindow::report(int64_t step) {
  auto layers = Json::object();
  for (const auto& [name, s] : layers_) {
    auto counts = s.tokens_per_expert.to(at::kCPU, at::kLong).contiguous();
    std::vector<int64_t> load(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel());
    double total = 0;
    for (auto v : load) total += static_cast<double>(v);
    const double drop = s.dropped_fraction.item<double>(), ept = s.experts_per_token.item<double>(),
                 passes = s.passes_per_token.item<double>();
    std::ostringstream line;
    line << std::fixed << std::setprecision(1) << "[moe] step " << step << " " << name << ": load%";
    for (auto v : load) line << " " << 100.0 * static_cast<double>(v) / std::max(1.0, total);
    line << std::setprecision(2) << " | drop " << 100 * drop << "% | experts/token " << ept << " | passes/token "
         << passes;
    log_info(line.str());
    layers[name] = {
        {"tokens_per_expert", load}, {"drop_rate", drop}, {"experts_per_token", ept}, {"passes_per_token", passes}};
  }
  auto languages = Json::object();
  for (const auto& [direction, per_layer] : usage_) {
    auto entry = Json::object();
    std::ostringstream line;
    line << "[moe] step " << step << " " << direction << " top experts:";
    for (const auto& [layer, device_counts] : per_layer) {
      const auto counts = device_counts.cpu();
      auto share = (counts / std::max(1.0, counts.sum().item<double>())).contiguous();
      entry[layer] = std::vector<double>(share.data_ptr<double>(), share.data_ptr<double>() + share.numel());
      auto top = share.topk(std::min<int64_t>(2, share.numel()));
      line << " " << layer << "=";
      for (int64_t i = 0; i < std::get<1>(top).numel(); ++i)
        line << (i ? "," : "") << std::get<1>(top)[i].item<int64_t>() << "("
             << std::lround(100 * std::get<0>(top)[i].item<double>()) << "%)";
    }
    log_info(line.str());
    languages[direction] = entry;
  }
  layers_.clear();
  usage_.clear();
  return {{"type", "moe"}, {"step", step}, {"layers", layers}, {"language_usage", languages}};
}

void write_usage_heatmaps(const std::string& dir, const std::string& title_prefix, int64_t step,
                          const std::map<std::string, std::map<std::string, at::Tensor>>& usage_by_layer) {
  if (usage_by_layer.empty()) return;
  std::filesystem::create_directories(dir);
  for (const auto& [layer, per_direction] : usage_by_layer) {
    std::vector<std::string> labels;
    std::vector<std::vector<double>> rows;
    for (const auto& [direction, counts] : per_direction) {
      auto c = counts.to(at::kCPU, at::kDouble).contiguous();
      labels.push_back(direction);
      rows.emplace_back(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
    }
    std::ofstream(std::filesystem::path(dir) / ("step" + std::to_string(step) + "-" + layer + ".svg"))
        << expert_usage_svg(title_prefix + " " + layer + ", validation step " + std::to_string(step), labels, rows);
  }
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>((s % 3600) / 60));
  } else if (s >= 60) {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%llds", static_cast<long long>(s));
  }
  return buf;
}

std::string progress_line(int64_t step, int64_t max_steps, double loss, double ppl, double lr, double tokens_per_s,
                          double eta_seconds, int width, double fraction) {
  const double by_steps = max_steps > 0 ? static_cast<double>(step) / static_cast<double>(max_steps) : 0.0;
  const double frac = std::clamp(fraction >= 0 ? fraction : by_steps, 0.0, 1.0);
  const int filled = static_cast<int>(frac * width);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(width - filled), '-');
  char buf[256];
  std::snprintf(buf, sizeof(buf), "step %lld/%lld [%s] loss %.3f ppl %.1f lr %.1e %.0f tok/s eta %s",
                static_cast<long long>(step), static_cast<long long>(max_steps), bar.c_str(), loss, ppl, lr,
                tokens_per_s, format_duration(eta_seconds).c_str());
  return buf;
}

std::string expert_usage_svg(const std::string& title, const std::vector<std::string>& row_labels,
                             const std::vector<std::vector<double>>& counts) {
  MOE_CHECK(row_labels.size() == counts.size(), "expert_usage_svg: ", row_labels.size(), " labels for ", counts.size(),
            " rows");
  const size_t E = counts.empty() ? 0 : counts.front().size();
  for (const auto& r : counts) MOE_CHECK(r.size() == E, "expert_usage_svg: rows must have the same number of experts");
  const int cell = 28, left = 90, top = 40, legend = 40;
  const int width = left + static_cast<int>(E) * cell + 20,
            height = top + static_cast<int>(counts.size()) * cell + legend;
  auto escape = [](const std::string& s) {
    std::string o;
    for (char c : s) {
      if (c == '<')
        o += "&lt;";
      else if (c == '>')
        o += "&gt;";
      else if (c == '&')
        o += "&amp;";
      else
        o += c;
    }
    return o;
  };
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"monospace\" font-size=\"11\">\n";
  svg << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg << "<text x=\"4\" y=\"16\" font-size=\"13\">" << escape(title) << "</text>\n";
  for (size_t e = 0; e < E; ++e)
    svg << "<text x=\"" << left + static_cast<int>(e) * cell + cell / 2 << "\" y=\"" << top - 6
        << "\" text-anchor=\"middle\">" << e << "</text>\n";
  for (size_t r = 0; r < counts.size(); ++r) {
    double total = 0;
    for (double v : counts[r]) total += v;
    const int y = top + static_cast<int>(r) * cell;
    svg << "<text x=\"" << left - 6 << "\" y=\"" << y + cell / 2 + 4 << "\" text-anchor=\"end\">"
        << escape(row_labels[r]) << "</text>\n";
    for (size_t e = 0; e < E; ++e) {
      const double share = total > 0 ? counts[r][e] / total : 0.0;
      // White (0) to dark blue (the row's whole load on one expert).
      const double t = std::min(1.0, share * 2.0);
      const int red = static_cast<int>(255 - 225 * t), green = static_cast<int>(255 - 175 * t),
                blue = static_cast<int>(255 - 75 * t);
      svg << "<rect x=\"" << left + static_cast<int>(e) * cell << "\" y=\"" << y << "\" width=\"" << cell - 1
          << "\" height=\"" << cell - 1 << "\" fill=\"rgb(" << red << "," << green << "," << blue << ")\"><title>"
          << escape(row_labels[r]) << " expert " << e << ": " << std::lround(share * 1000) / 10.0
          << "%</title></rect>\n";
      char pct[16];
      std::snprintf(pct, sizeof(pct), "%.0f", share * 100);
      svg << "<text x=\"" << left + static_cast<int>(e) * cell + cell / 2 << "\" y=\"" << y + cell / 2 + 4
          << "\" text-anchor=\"middle\" fill=\"" << (t > 0.6 ? "white" : "black") << "\">" << pct << "</text>\n";
    }
  }
  svg << "<text x=\"4\" y=\"" << height - 12 << "\">% of each row's routed assignments per expert (columns)</text>\n";
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace moe
