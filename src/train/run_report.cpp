// The run report (see moe/train/run_report.h): line charts drawn as inline SVG from metrics.jsonl.
#include "moe/train/run_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "moe/core/error.h"
#include "moe/core/json.h"

namespace moe {
namespace fs = std::filesystem;
namespace {

constexpr int kPageWidth = 1240, kMargin = 20, kChartWidth = 590, kChartHeight = 300;
const std::vector<std::string> kColors{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                       "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else if (c == '&') {
      out += "&amp;";
    } else if (c == '"') {
      out += "&quot;";
    } else {
      out += c;
    }
  }
  return out;
}

std::string number(double v) {
  char buf[32];
  const double a = std::fabs(v);
  std::snprintf(buf, sizeof(buf), (a != 0 && (a < 1e-3 || a >= 1e5)) ? "%.1e" : (a < 10 ? "%.3g" : "%.0f"), v);
  return buf;
}

// A tick label with just enough decimals that ticks `step` apart read differently.
std::string tick_label(double v, double step) {
  const double a = std::fabs(v);
  if ((a != 0 && (a < 1e-3 || a >= 1e5)) || !(step > 0)) return number(v);
  char buf[32];
  if (step < 1e-3) {  // an axis of small values (a learning rate): all in the same notation
    std::snprintf(buf, sizeof(buf), "%.1e", v);
    return buf;
  }
  const int decimals = std::min(6, std::max(0, static_cast<int>(std::ceil(-std::log10(step)))));
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

struct Series {
  std::string name, color;
  std::vector<std::pair<double, double>> points;  ///< (update, value); non-finite values are skipped
};

// A line chart: axes with five ticks each, one polyline (and markers for short series) per series,
// a legend. log_y: a log10 axis (values <= 0 are skipped).
std::string line_chart(const std::string& title, const std::string& y_label, std::vector<Series> series,
                       bool log_y = false) {
  const int W = kChartWidth, H = kChartHeight, left = 64, right = 16, top = 34, bottom = 40;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (auto& s : series) {
    std::vector<std::pair<double, double>> kept;
    for (auto [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y) || (log_y && y <= 0)) continue;
      if (log_y) y = std::log10(y);
      kept.emplace_back(x, y);
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
    s.points = std::move(kept);
  }
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
      << "\" font-family=\"sans-serif\" font-size=\"11\"><rect width=\"100%\" height=\"100%\" fill=\"white\" "
         "stroke=\"#ddd\"/><text x=\"8\" y=\"18\" font-size=\"13\" font-weight=\"bold\">"
      << escape(title) << "</text>";
  if (x0 > x1) {
    svg << "<text x=\"" << W / 2 << "\" y=\"" << H / 2
        << "\" text-anchor=\"middle\" fill=\"#888\">no data yet</text></svg>";
    return svg.str();
  }
  if (x1 - x0 < 4) {  // fewer updates than ticks (e.g. one statistics record): whole-update ticks around them
    const double mid = std::round((x0 + x1) / 2);
    x0 = mid - 2, x1 = mid + 2;
  }
  if (y1 == y0) y0 -= 0.5, y1 += 0.5;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad, y1 += pad;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (W - left - right); };
  auto py = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * (H - top - bottom); };
  svg << "<line x1=\"" << left << "\" y1=\"" << H - bottom << "\" x2=\"" << W - right << "\" y2=\"" << H - bottom
      << "\" stroke=\"#333\"/><line x1=\"" << left << "\" y1=\"" << top << "\" x2=\"" << left << "\" y2=\""
      << H - bottom << "\" stroke=\"#333\"/>";
  for (int i = 0; i <= 4; ++i) {
    const double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    svg << "<text x=\"" << px(xv) << "\" y=\"" << H - bottom + 14 << "\" text-anchor=\"middle\">"
        << number(std::round(xv)) << "</text>";
    svg << "<line x1=\"" << left << "\" y1=\"" << py(yv) << "\" x2=\"" << W - right << "\" y2=\"" << py(yv)
        << "\" stroke=\"#eee\"/><text x=\"" << left - 4 << "\" y=\"" << py(yv) + 4 << "\" text-anchor=\"end\">"
        << (log_y ? number(std::pow(10.0, yv)) : tick_label(yv, (y1 - y0) / 4)) << "</text>";
  }
  svg << "<text x=\"" << (left + W - right) / 2 << "\" y=\"" << H - 6 << "\" text-anchor=\"middle\">update</text>"
      << "<text x=\"12\" y=\"" << (top + H - bottom) / 2 << "\" transform=\"rotate(-90 12 " << (top + H - bottom) / 2
      << ")\" text-anchor=\"middle\">" << escape(y_label) << (log_y ? " (log)" : "") << "</text>";
  int legend_x = left + 8;
  for (const auto& s : series) {
    if (s.points.empty()) continue;
    svg << "<polyline fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"2\" points=\"";
    for (auto [x, y] : s.points) svg << px(x) << "," << py(y) << " ";
    svg << "\"/>";
    if (s.points.size() <= 30)
      for (auto [x, y] : s.points)
        svg << "<circle cx=\"" << px(x) << "\" cy=\"" << py(y) << "\" r=\"3\" fill=\"" << s.color << "\"/>";
    svg << "<rect x=\"" << legend_x << "\" y=\"" << top - 8 << "\" width=\"10\" height=\"10\" fill=\"" << s.color
        << "\"/><text x=\"" << legend_x + 14 << "\" y=\"" << top + 1 << "\">" << escape(s.name) << "</text>";
    legend_x += 22 + 7 * static_cast<int>(s.name.size());
  }
  svg << "</svg>";
  return svg.str();
}

std::vector<Json> read_records(const fs::path& path) {
  std::vector<Json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("type") && j.contains("step")) out.push_back(std::move(j));
  }
  return out;
}

double get(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The heatmaps of the latest validation that wrote any: layer -> SVG text.
std::map<std::string, std::string> latest_heatmaps(const fs::path& dir) {
  std::map<int64_t, std::map<std::string, std::string>> by_step;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto name = e.path().filename().string();  // step<N>-<layer>.svg
    const auto dash = name.find('-');
    if (name.rfind("step", 0) != 0 || dash == std::string::npos || e.path().extension() != ".svg") continue;
    try {
      by_step[std::stoll(name.substr(4, dash - 4))][name.substr(dash + 1, name.size() - dash - 5)] = slurp(e.path());
    } catch (const std::exception&) {
    }
  }
  return by_step.empty() ? std::map<std::string, std::string>{} : by_step.rbegin()->second;
}

}  // namespace

RunReport build_run_report(const std::string& run_dir) {
  const fs::path dir(run_dir);
  const auto records = read_records(dir / "metrics.jsonl");
  std::map<std::string, std::vector<const Json*>> of;
  for (const auto& r : records) of[r["type"].get<std::string>()].push_back(&r);
  auto series = [&](const std::string& type, const char* key, const std::string& name, size_t color) {
    Series s{name, kColors[color % kColors.size()], {}};
    for (const auto* r : of[type]) s.points.emplace_back(get(*r, "step"), get(*r, key));
    return s;
  };
  RunReport report;
  std::ostringstream body;
  int y = 70;
  int column = 0;
  auto place = [&](const std::string& id, const std::string& title, const std::string& color, const std::string& svg,
                   int width, int height) {
    if (column == 1 && kMargin * 2 + kChartWidth + width > kPageWidth) column = 0, y += kChartHeight + kMargin;
    const int x = kMargin + column * (kChartWidth + kMargin);
    body << "<div class=\"box\" id=\"" << escape(id) << "\" data-box=\"" << x << " " << y << " " << width << " "
         << height << "\" style=\"left:" << x << "px;top:" << y << "px;width:" << width << "px;height:" << height
         << "px\">" << svg << "</div>\n";
    report.boxes.push_back({id, title, color, x, y, width, height});
    if (++column == 2) column = 0, y += std::max(height, kChartHeight) + kMargin;
  };
  auto heading = [&](const std::string& text) {
    if (column != 0) column = 0, y += kChartHeight + kMargin;
    body << "<h2 style=\"top:" << y << "px\">" << escape(text) << "</h2>\n";
    y += 40;
  };
  auto chart = [&](const std::string& id, const std::string& title, const std::string& y_label,
                   std::vector<Series> lines, bool log_y = false) {
    const auto color = lines.empty() ? std::string() : lines.front().color;
    place(id, title, color, line_chart(title, y_label, std::move(lines), log_y), kChartWidth, kChartHeight);
  };

  heading("Training and validation");
  chart("chart-loss", "loss per target token", "nats",
        {series("train", "loss", "train", 0), series("valid", "loss", "valid", 1)});
  chart("chart-ppl", "perplexity", "ppl", {series("train", "ppl", "train", 0), series("valid", "ppl", "valid", 1)},
        true);
  chart("chart-lr", "learning rate", "lr", {series("train", "lr", "lr", 2)});
  chart("chart-tokens", "target tokens per second", "tokens/s", {series("train", "tokens_per_s", "tokens/s", 4)});
  chart("chart-grad-norm", "gradient norm (before clipping)", "norm", {series("train", "grad_norm", "grad norm", 3)});

  // Per MoE layer, from the "moe" records.
  std::map<std::string, std::vector<std::pair<int64_t, const Json*>>> layers;
  for (const auto* r : of["moe"])
    for (const auto& [name, stats] : (*r)["layers"].items())
      layers[name].emplace_back((*r)["step"].get<int64_t>(), &stats);
  for (const auto& [layer, points] : layers) {
    heading("MoE layer " + layer);
    std::vector<Series> load;
    for (size_t e = 0; e < points.front().second->at("tokens_per_expert").size(); ++e)
      load.push_back({"e" + std::to_string(e), kColors[e % kColors.size()], {}});
    Series drop{"dropped %", kColors[3], {}}, ept{"experts/token", kColors[0], {}},
        passes{"passes/token", kColors[1], {}};
    bool multi_pass = false;
    for (const auto& [step, s] : points) {
      const auto& counts = s->at("tokens_per_expert");
      double total = 0;
      for (const auto& c : counts) total += c.get<double>();
      for (size_t e = 0; e < counts.size() && e < load.size(); ++e)
        load[e].points.emplace_back(step, 100.0 * counts[e].get<double>() / std::max(1.0, total));
      drop.points.emplace_back(step, 100.0 * get(*s, "drop_rate"));
      ept.points.emplace_back(step, get(*s, "experts_per_token"));
      passes.points.emplace_back(step, get(*s, "passes_per_token"));
      multi_pass |= get(*s, "passes_per_token") != 1.0;
    }
    chart("chart-load-" + layer, layer + ": load per expert (% of rows)", "% of rows", load);
    chart("chart-drop-" + layer, layer + ": assignments dropped by capacity", "%", {drop});
    std::vector<Series> per_token{ept};
    if (multi_pass) per_token.push_back(passes);
    chart("chart-experts-" + layer, layer + (multi_pass ? ": experts and passes per token" : ": experts per token"),
          "per token", per_token);
  }
  const auto heatmaps = latest_heatmaps(dir / "heatmaps");
  if (!heatmaps.empty()) heading("Expert usage per direction (latest validation)");
  for (const auto& [layer, svg] : heatmaps) {
    int w = kChartWidth, h = kChartHeight;
    std::sscanf(svg.c_str(), "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\"", &w, &h);
    place("heatmap-" + layer, "expert usage " + layer, "", svg, std::min(w, kPageWidth - 2 * kMargin), h);
  }
  if (column != 0) y += kChartHeight + kMargin;

  // The results and the configuration, in the flow below the charts.
  std::ostringstream tail;
  const auto results = Json::parse(slurp(dir / "results.json"), nullptr, false);
  if (results.is_object() && results.contains("directions")) {
    tail << "<h2>Results (" << escape(results.value("eval_split", "")) << " split, beam " << results.value("beam", 0)
         << ", step " << results.value("step", 0) << ")</h2><table><tr><th>direction</th><th>sentences</th>"
         << "<th>BLEU</th><th>chrF2</th><th>chrF2++</th></tr>";
    char buf[160];
    for (const auto& [name, d] : results["directions"].items()) {
      std::snprintf(buf, sizeof(buf), "<td>%.2f</td><td>%.2f</td><td>%.2f</td>", get(d, "bleu"), get(d, "chrf2"),
                    get(d, "chrf2pp"));
      tail << "<tr><td>" << escape(name) << "</td><td>" << d.value("sentences", 0) << "</td>" << buf << "</tr>";
    }
    tail << "</table>";
    const auto first = results["directions"].begin();
    if (first != results["directions"].end())
      tail << "<p class=\"sig\">BLEU " << escape(first->value("bleu_signature", "")) << "<br>chrF2 "
           << escape(first->value("chrf2_signature", "")) << "</p>";
  } else {
    tail << "<h2>Results</h2><p>Not evaluated yet.</p>";
  }
  tail << "<h2>Configuration</h2><pre>" << escape(slurp(dir / "config.toml")) << "</pre>";

  report.page_width = kPageWidth;
  report.page_height = y + 900;  // the results and the configuration below the charts
  std::ostringstream html;
  const auto last_step = records.empty() ? int64_t{0} : records.back()["step"].get<int64_t>();
  html << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>moe run " << escape(run_dir)
       << "</title><style>body{margin:0;font-family:sans-serif;background:#fafafa;position:relative;width:"
       << kPageWidth << "px}h1,h2{position:absolute;left:" << kMargin << "px;margin:0;font-weight:600}"
       << "h1{top:18px;font-size:22px}h2{font-size:17px}.box{position:absolute}.tail{position:absolute;left:" << kMargin
       << "px;top:" << y << "px;width:" << kPageWidth - 2 * kMargin << "px}.tail h2{position:static;margin:18px 0 8px}"
       << "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 10px;text-align:right}"
       << "pre{background:white;border:1px solid #ddd;padding:8px;font-size:11px}.sig{font-size:11px;color:#555}"
       << "</style></head>\n<body data-page=\"" << kPageWidth << " " << report.page_height
       << "\" style=\"height:" << report.page_height << "px\"><h1>" << escape(fs::path(run_dir).filename().string())
       << ": " << records.size() << " records up to update " << last_step << "</h1>\n"
       << body.str() << "<div class=\"tail\">" << tail.str() << "</div>\n</body></html>\n";
  report.html = html.str();
  return report;
}

RunReport write_run_report(const std::string& run_dir) {
  auto report = build_run_report(run_dir);
  const auto path = fs::path(run_dir) / "report.html";
  const auto tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << report.html;
    out.flush();
    MOE_CHECK(out.good(), "report: cannot write ", tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  MOE_CHECK(!ec, "report: cannot replace ", path.string(), ": ", ec.message());
  return report;
}

}  // namespace moe
