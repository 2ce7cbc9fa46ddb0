// moe-average: averages the parameters of several checkpoints of a run into one that moe-translate
// loads (fairseq's average_checkpoints; moe/train/averaging.h).
//   moe-average --run_dir runs/demo --last 5                 # -> runs/demo/average-last5.moeckpt
//   moe-average --inputs a.moeckpt b.moeckpt -o avg.moeckpt
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "moe/core/error.h"
#include "moe/train/averaging.h"
#include "program_errors.h"

int main(int argc, char** argv) {
  CLI::App app{"Average the parameters of checkpoints (fairseq's average_checkpoints)"};
  std::vector<std::string> inputs;
  std::string run_dir, output;
  int64_t last = 0;
  app.add_option("--inputs", inputs, "checkpoints to average, in order");
  app.add_option("--run_dir", run_dir, "with --last: the run folder");
  app.add_option("--last", last, "average the newest N step checkpoints of --run_dir");
  app.add_option("-o,--output", output, "the averaged checkpoint (default <run_dir>/average-last<N>.moeckpt)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (last > 0) {
      if (!inputs.empty()) throw moe::Error("give either --inputs or --run_dir with --last, not both");
      inputs = moe::last_step_checkpoints(run_dir, last);
      if (output.empty())
        output = (std::filesystem::path(run_dir) / ("average-last" + std::to_string(last) + ".moeckpt")).string();
    }
    if (inputs.empty()) throw moe::Error("nothing to average: give --inputs, or --run_dir with --last N");
    if (output.empty()) throw moe::Error("give the output file with -o");
    moe::average_checkpoints(inputs, output);
    std::printf("%s\n", output.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe-average: error: %s\n", moe::cli::error_line(e).c_str());
    return 1;
  }
  return 0;
}
