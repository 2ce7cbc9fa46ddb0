// The real trainer's throughput: moe::Trainer (bench: the same code moe-train runs) for --warmup +
// --updates updates of a run configuration, validation and checkpoints left to the end, evaluation
// off. Prints target tokens per second, the median step time and the model FLOP utilisation against
// the matmul rate measured in the same run on the same device (fp32 on the CPU, bf16 on CUDA).
// FLOPs per update: 3 x the model's forward FLOPs per token (ParameterCount: 2 per active matmul
// parameter, the variant's nominal experts per token) x target tokens, the usual estimate of one
// forward and two backward passes with source and target tokens paired; attention scores are left out,
// so the figure is a lower bound of the work done. Last column: the ATen operator calls of one steady
// update made from outside ATen (forward, backward, optimizer; counted in a separate short run), the
// host and launch budget a GPU step pays.
//
// --dump-batches DIR also writes what the PyTorch reference (bench/reference_trainer.py) needs to
// train the same model on the same batches: DIR/batches.bin (every micro-batch of the run, drawn
// from the trainer's own batcher stream) and DIR/model.json (the model's hyper-parameters, the
// training settings, the parameter shapes and counts the reference must reproduce, and this run's
// measurements).
//
//   bench_train_throughput --config configs/multi30k-gshard.toml --tokenizer.vocab_size 8000
//   bench_train_throughput --config configs/gpu-multi30k-gshard.toml --data.max_tokens 65536 --updates 30
#include <ATen/record_function.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "config_cli.h"
#include "moe/core/json.h"
#include "moe/core/logging.h"
#include "moe/data/batching.h"
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

// ATen operator calls made from outside ATen (the calls moe and LibTorch's autograd engine make;
// an op's own nested calls are not counted): on a GPU each is at least one kernel launch and costs
// host time, so the count per update is the launch and host budget of a step, measurable on the
// CPU. Counted through a RecordFunction callback while g_counting is set; --ops-detail lists them
// per operator.
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_ops{0};
std::mutex g_names_mutex;
std::map<std::string, int64_t> g_names;  // per operator (--ops-detail)
thread_local int t_depth = 0;

bool is_aten(const at::RecordFunction& fn) { return std::strncmp(fn.name(), "aten::", 6) == 0; }

std::unique_ptr<at::ObserverContext> enter_aten_op(const at::RecordFunction& fn) {
  if (!is_aten(fn)) return nullptr;
  if (g_counting.load(std::memory_order_relaxed) && t_depth == 0) {
    g_ops.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(g_names_mutex);
    ++g_names[fn.name()];
  }
  ++t_depth;
  return nullptr;
}

void leave_aten_op(const at::RecordFunction& fn, at::ObserverContext*) {
  if (is_aten(fn)) --t_depth;
}

// One steady update's ATen calls: a short run of `config`, counted from the first micro-batch of
// update 3 (where its loss is ready) to the same point of update 4. Not inside the timed run: the
// callback slows every call.
int64_t aten_ops_per_update(moe::RunConfig config) {
  config.train.max_steps = 5;
  config.train.validate_every = config.train.checkpoint_every = config.train.stats_every = config.train.log_every = 5;
  config.run_dir += "-ops";
  int64_t count = -1;
  auto handle = at::addGlobalCallback(
      at::RecordFunctionCallback(&enter_aten_op, &leave_aten_op).scopes({at::RecordScope::FUNCTION}));
  struct Cleanup {  // however the run ends
    at::CallbackHandle handle;
    std::string run_dir;
    ~Cleanup() {
      g_counting = false;
      moe::Trainer::update_fault_hook() = nullptr;
      at::removeCallback(handle);
      std::filesystem::remove_all(run_dir);
    }
  } cleanup{handle, config.run_dir};
  // The hook runs once per micro-batch: the window opens and closes at the first one of its update.
  moe::Trainer::update_fault_hook() = [&](int64_t update) {
    if (update == 3 && !g_counting && count < 0) {
      g_ops = 0;
      g_counting = true;
    } else if (update == 4 && g_counting) {
      count = g_ops.load();
      g_counting = false;
    }
    return false;
  };
  moe::Trainer trainer(config);
  trainer.train();
  MOE_CHECK(count >= 0, "counting ATen calls: update 4 never started");
  return count;
}

// batches.bin: int64 little-endian; count, then per micro-batch B, S, T, source [B, S],
// target_input [B, T], target_output [B, T] (row-major, padding id 0).
void dump_batches(const std::string& path, const moe::Trainer& trainer, int64_t count) {
  const auto& c = trainer.config();
  moe::BatcherOptions bo;
  bo.max_tokens = c.data.max_tokens;
  bo.temperature = c.data.temperature;
  bo.seed = static_cast<uint64_t>(c.train.seed);
  moe::TokenBatcher batcher(trainer.data().train, bo);  // the trainer's stream from its start
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  auto put = [&](const at::Tensor& t) {
    auto v = t.to(at::kLong).contiguous();
    out.write(reinterpret_cast<const char*>(v.data_ptr<int64_t>()), static_cast<std::streamsize>(v.numel() * 8));
  };
  put(at::tensor({count}, at::kLong));
  for (int64_t i = 0; i < count; ++i) {
    auto b = batcher.next();
    put(at::tensor({b.source.size(0), b.source.size(1), b.target_input.size(1)}, at::kLong));
    put(b.source);
    put(b.target_input);
    put(b.target_output);
  }
  out.flush();
  MOE_CHECK(out.good(), "--dump-batches: cannot write ", path);
}

moe::Json model_json(moe::Trainer& trainer) {
  const auto& c = trainer.config();
  const auto& m = trainer.model()->options;
  const auto router = m.moe.resolved_router_options(m.d_model);
  const auto count = trainer.model()->count_parameters();
  moe::Json shapes = moe::Json::object();
  for (const auto& p : trainer.model()->named_parameters()) shapes[p.key()] = p.value().sizes().vec();
  std::vector<int64_t> moe_encoder, moe_decoder;
  for (int64_t i = 0; i < m.encoder_layers; ++i)
    if (m.moe.is_moe_layer(i, false)) moe_encoder.push_back(i);
  for (int64_t i = 0; i < m.decoder_layers; ++i)
    if (m.moe.is_moe_layer(i, true)) moe_decoder.push_back(i);
  return {{"vocab_size", m.vocab_size},
          {"padding_idx", m.padding_idx},
          {"d_model", m.d_model},
          {"heads", m.heads},
          {"encoder_layers", m.encoder_layers},
          {"decoder_layers", m.decoder_layers},
          {"ffn_hidden", m.ffn_hidden},
          {"activation", m.activation},
          {"dropout", m.dropout},
          {"attention_dropout", m.attention_dropout},
          {"activation_dropout", m.activation_dropout},
          {"pre_norm", m.pre_norm},
          {"max_positions", m.max_positions},
          {"scale_embedding", m.scale_embedding},
          {"variant", m.moe.variant},
          {"num_experts", m.moe.num_experts},
          {"expert_hidden", m.moe.expert_hidden > 0 ? m.moe.expert_hidden : m.ffn_hidden},
          {"moe_encoder_layers", moe_encoder},
          {"moe_decoder_layers", moe_decoder},
          {"top_k", router.top_k},
          {"second_expert_policy", moe::to_string(router.second_expert_policy)},
          {"capacity_factor", router.capacity.capacity_factor},
          {"capacity_formula", moe::to_string(router.capacity.formula)},
          {"min_capacity", router.capacity.min_capacity},
          {"drop_tokens", router.capacity.drop_tokens},
          {"jitter", router.jitter},
          {"mask_padding", router.mask_padding},
          {"balance_loss_coef", router.balance_loss_coef},
          {"label_smoothing", c.train.label_smoothing},
          {"lr", c.train.lr},
          {"warmup", c.train.warmup},
          {"warmup_init_lr", c.train.warmup_init_lr},
          {"adam_betas", {c.train.adam_beta1, c.train.adam_beta2}},
          {"adam_eps", c.train.adam_eps},
          {"weight_decay", c.train.weight_decay},
          {"clip_norm", c.train.clip_norm},
          {"update_freq", c.train.update_freq},
          {"device", c.train.device},
          {"precision", c.train.precision},
          {"threads", c.train.threads},
          {"parameters", count.total},
          {"forward_flops_per_token", count.forward_flops_per_token},
          {"parameter_shapes", shapes}};
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
  std::string dump_dir;
  bool ops_detail = false;
  app.add_flag("--ops-detail", ops_detail, "also print the ATen operators of one update, most frequent first");
  app.add_option("--dump-batches", dump_dir,
                 "write DIR/batches.bin and DIR/model.json for bench/reference_trainer.py (the same model and batches)");
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
    moe::Json dumped;
    {
      moe::Trainer trainer(config);
      trainer.train();
      if (!dump_dir.empty()) {
        std::filesystem::create_directories(dump_dir);
        dump_batches((std::filesystem::path(dump_dir) / "batches.bin").string(), trainer,
                     t.max_steps * t.update_freq);
        dumped = model_json(trainer);
      }
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
    const int64_t ops = aten_ops_per_update(config);
    if (ops_detail) {
      std::vector<std::pair<int64_t, std::string>> ranked;
      for (const auto& [name, n] : g_names) ranked.emplace_back(n, name);
      std::sort(ranked.rbegin(), ranked.rend());
      std::printf("| ATen operator | calls in one update |\n|---|---:|\n");
      for (const auto& [n, name] : ranked) std::printf("| %s | %lld |\n", name.c_str(), static_cast<long long>(n));
      std::printf("\n");
    }
    std::printf(
        "| device | variant | timed updates | target tokens/update | median step ms | target tokens/s | "
        "model TFLOP/s | matmul TFLOP/s (%s, measured) | MFU | ATen ops/update |\n",
        bf16 ? "bf16" : "fp32");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    std::printf("| %s | %s | %zu | %.0f | %.1f | %.0f | %.4f | %.3f | %.2f %% | %lld |\n", t.device.c_str(),
                config.model.moe.variant.c_str(), step_ms.size(), tokens / static_cast<double>(step_ms.size()),
                step_ms[step_ms.size() / 2], tokens / seconds, model_flops / 1e12, rate / 1e12,
                100.0 * model_flops / rate, static_cast<long long>(ops));
    if (!dump_dir.empty()) {
      dumped["bench_warmup"] = warmup;  // updates before timing ("warmup" is the learning-rate warm-up)
      dumped["bench_updates"] = updates;
      dumped["moe_train"] = {{"target_tokens_per_s", tokens / seconds},
                             {"median_step_ms", step_ms[step_ms.size() / 2]},
                             {"matmul_flops_per_s", rate},
                             {"mfu", model_flops / rate},
                             {"aten_ops_per_update", ops}};
      std::ofstream((std::filesystem::path(dump_dir) / "model.json").string()) << dumped.dump(2) << "\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_throughput: error: %s\n", moe::cli::error_line(e).c_str());
    return 1;
  }
  return 0;
}
