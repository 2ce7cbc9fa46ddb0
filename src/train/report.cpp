// Metrics log, progress line and expert-usage heatmaps (see moe/train/report.h).
#include "moe/train/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "moe/core/error.h"

namespace moe {

MetricsLog::MetricsLog(const std::string& path, bool append)
    : path_(path), out_(path, append ? std::ios::app : std::ios::trunc) {
  MOE_CHECK(out_.good(), "metrics: cannot open ", path, " for writing");
}

void MetricsLog::write(const Json& record) {
  if (!out_.is_open()) return;
  out_ << record.dump() << '\n';
  out_.flush();
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
