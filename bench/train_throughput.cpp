// The real trainer's throughput: moe::Trainer (bench: the same code moe-train runs) for --warmup +
// --updates updates of a run configuration, validation and checkpoints left to the end, evaluation
// off. Prints target tokens per second, the median step time and the model FLOP utilisation against
// the matmul rate measured in the same run on the same device (fp32 on the CPU, bf16 on CUDA).
// FLOPs per update: 3 x the model's forward FLOPs per token (ParameterCount: 2 per active matmul
// parameter, the variant's nominal experts per token) x target tokens, the usual estimate of one
// forward and two backward passes with source and target tokens paired; attention scores are left out,
// so the figure is a lower bound of the work done.
//
//   bench_train_throughput --config configs/multi30k-gshard.toml --tokenizer.vocab_size 8000
//   bench_train_throughput --config configs/m4-gshard-gpu.toml --data.max_tokens 65536 --updates 30
#include <torch/cuda.h>
#include <torch/torch.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "config_cli.h"
#include "moe/core/logging.h"
#include "moe/train/trainer.h"
#include "program_errors.h"

namespace {

// The device's dense matmul rate (FLOP/s): the median of `reps` n x n x n products.
double matmul_rate(const at::Device& device, bool bf16, int64_t n, int reps) {
  const auto options = at::TensorOptions().device(device).dtype(bf16 ? at::kBFloat16 : at::kFloat);
  auto a = at::randn({n, n}, options), b = at::randn({n, n}, options);
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  std::vector<double> seconds;
  for (int i = 0; i < reps + 1; ++i) {
    sync();
    const auto t0 = std::chrono::steady_clock::now();
    auto c = at::mm(a, b);
    sync();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i > 0) seconds.push_back(s);  // the first product warms up
  }
  std::sort(seconds.begin(), seconds.end());
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / seconds[seconds.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Target tokens/s, step time and model FLOP utilisation of the real trainer"};
  moe::cli::ConfigOptions config_options;
  moe::cli::add_config_options(app, config_options);
  int64_t warmup = 10, updates = 40, matmul_n = 0;
  app.add_option("--warmup", warmup, "updates before timing")->check(CLI::Range(int64_t{1}, int64_t{100000}));
  app.add_option("--updates", updates, "timed updates")->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  app.add_option("--matmul-size", matmul_n, "n of the n x n x n matmul reference (0: 1024 on the CPU, 8192 on CUDA)")
      ->check(CLI::Range(int64_t{0}, int64_t{32768}));
  try {
    moe::RunConfig config;
    int exit_code = 0;
    if (!moe::cli::parse_run_config(app, argc, argv, config_options, config, exit_code)) return exit_code;
    auto& t = config.train;
    t.max_steps = warmup + updates;
    t.max_minutes = 0;
    t.validate_every = t.checkpoint_every = t.stats_every = t.log_every = t.max_steps;
    config.log_level = "warn";
    config.run_dir =
        (std::filesystem::temp_directory_path() / ("moe-train-throughput-" + std::to_string(::getpid()))).string();
    config.validate();
    double tokens = 0, seconds = 0, forward_flops = 0;
    std::vector<double> step_ms;
    {
      moe::Trainer trainer(config);
      trainer.train();
      const auto& history = trainer.history();
      for (size_t i = static_cast<size_t>(warmup); i < history.size(); ++i) {
        tokens += static_cast<double>(history[i].tokens);
        seconds += history[i].seconds;
        step_ms.push_back(1e3 * history[i].seconds);
      }
      forward_flops = trainer.model()->count_parameters().forward_flops_per_token;
    }
    std::filesystem::remove_all(config.run_dir);
    MOE_CHECK(!step_ms.empty(), "no timed update finished (non-finite updates are not counted)");
    std::sort(step_ms.begin(), step_ms.end());
    const auto device = moe::parse_run_device(t.device);
    const bool bf16 = t.precision == "bf16" && device.is_cuda();
    const double rate = matmul_rate(device, bf16, matmul_n > 0 ? matmul_n : (device.is_cuda() ? 8192 : 1024), 5);
    const double model_flops = 3.0 * forward_flops * tokens / seconds;
    std::printf(
        "| device | variant | timed updates | target tokens/update | median step ms | target tokens/s | "
        "model TFLOP/s | matmul TFLOP/s (%s, measured) | MFU |\n",
        bf16 ? "bf16" : "fp32");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    std::printf("| %s | %s | %zu | %.0f | %.1f | %.0f | %.4f | %.3f | %.2f %% |\n", t.device.c_str(),
                config.model.moe.variant.c_str(), step_ms.size(), tokens / static_cast<double>(step_ms.size()),
                step_ms[step_ms.size() / 2], tokens / seconds, model_flops / 1e12, rate / 1e12,
                100.0 * model_flops / rate);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_throughput: error: %s\n", moe::cli::error_line(e).c_str());
    return 1;
  }
  return 0;
}
