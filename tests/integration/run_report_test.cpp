// report.html in a real browser: a tiny run writes it; headless Chromium (Debian's chromium, which
// ./scripts/test installs) renders it to a screenshot; every chart and heatmap must be drawn where the
// report put it (tests/support/png_boxes.py counts its pixels: not white, and in the first series'
// colour). A report of a run with no records yet draws nothing there, which the same check notices.
#include "moe/train/run_report.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "moe/core/json.h"
#include "moe/train/trainer.h"
#include "programs.h"
#include "scratch.h"
#include "test_paths.h"

namespace moe {
namespace {

namespace fs = std::filesystem;

std::string chromium() {
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"})
    if (std::system((std::string("command -v ") + name + " >/dev/null 2>&1").c_str()) == 0) return name;
  return "";
}

// Screenshot of `html` at the report's page size; per box, the pixel counts of png_boxes.py.
std::map<std::string, Json> render(const RunReport& report, const fs::path& html, const fs::path& png) {
  auto [rc, out] =
      moe::testing::run("timeout 120 " + chromium() +
                        " --headless --no-sandbox --disable-gpu --hide-scrollbars --screenshot=" + png.string() +
                        " --window-size=" + std::to_string(report.page_width) + "," +
                        std::to_string(report.page_height) + " file://" + html.string());
  EXPECT_TRUE(fs::exists(png)) << out;
  std::ostringstream boxes;
  for (const auto& b : report.boxes)
    boxes << b.id << " " << b.x << " " << b.y << " " << b.width << " " << b.height << " "
          << (b.color.empty() ? "-" : b.color) << "\n";
  const auto list = png.string() + ".boxes";
  std::ofstream(list) << boxes.str();
  const auto script = (fs::path(moe::testing::kSourceDir) / "tests" / "support" / "png_boxes.py").string();
  std::tie(rc, out) = moe::testing::run("python3 " + script + " " + png.string() + " < " + list);
  EXPECT_EQ(rc, 0) << out;
  std::map<std::string, Json> result;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    auto j = Json::parse(line, nullptr, false);
    if (j.is_object()) result[j["id"].get<std::string>()] = j;
  }
  return result;
}

TEST(RunReportTest, EveryPlotIsDrawnInARealBrowser) {
  const auto missing = moe::testing::default_corpus_missing();
  if (!missing.empty()) GTEST_SKIP() << "default corpus unavailable: " << missing;
  if (chromium().empty()) GTEST_SKIP() << "no chromium (./scripts/test installs Debian's chromium)";
  RunConfig c;
  apply_toml_file(c, (fs::path(moe::testing::kSourceDir) / "configs" / "tiny.toml").string());
  c.run_dir = moe::testing::scratch("report_run").string();
  c.data.cache_dir = moe::testing::scratch("report_cache").string();
  c.log_level = "warn";
  c.train.threads = 1;
  c.train.max_steps = 40;
  c.train.stats_every = 10;
  c.train.validate_every = 20;
  c.train.log_every = 5;
  c.data.max_test_sentences = 10;
  c.eval.beam = 1;
  Trainer t(c);
  t.train();
  t.evaluate();
  const auto html = fs::path(c.run_dir) / "report.html";
  ASSERT_TRUE(fs::exists(html));
  const auto text = moe::testing::slurp_file(html.string());
  // Self-contained: no script, no link or image fetched from anywhere.
  EXPECT_EQ(text.find("<script"), std::string::npos);
  EXPECT_EQ(text.find(" src="), std::string::npos);
  EXPECT_EQ(text.find(" href="), std::string::npos);
  EXPECT_NE(text.find("<td>en-de</td>"), std::string::npos);      // the results table
  EXPECT_NE(text.find("variant = 'gshard'"), std::string::npos);  // the configuration
  const auto report = build_run_report(c.run_dir);
  std::vector<std::string> ids;
  for (const auto& b : report.boxes) ids.push_back(b.id);
  for (const char* id :
       {"chart-loss", "chart-ppl", "chart-lr", "chart-tokens", "chart-grad-norm", "chart-load-encoder.1",
        "chart-drop-encoder.1", "chart-experts-encoder.1", "chart-load-decoder.1", "chart-drop-decoder.1",
        "chart-experts-decoder.1", "heatmap-encoder.1", "heatmap-decoder.1"}) {
    EXPECT_NE(std::find(ids.begin(), ids.end(), id), ids.end()) << id;
  }
  const auto pixels = render(report, html, fs::path(c.run_dir) / "report.png");
  ASSERT_EQ(pixels.size(), report.boxes.size());
  for (const auto& b : report.boxes) {
    const auto& p = pixels.at(b.id);
    EXPECT_GT(p["nonwhite"].get<double>(), 0.02) << b.id;  // axes, text, lines or cells
    if (!b.color.empty()) {
      EXPECT_GE(p["matching"].get<int64_t>(), 40) << b.id << " has no line in " << b.color;
    }
  }
  // The negative control: a run folder with nothing in it yet draws no series.
  const auto empty_dir = moe::testing::scratch("report_empty");
  const auto empty = write_run_report(empty_dir.string());
  const auto blank = render(empty, empty_dir / "report.html", empty_dir / "report.png");
  EXPECT_LT(blank.at("chart-loss")["matching"].get<int64_t>(), 40);
}

}  // namespace
}  // namespace moe
