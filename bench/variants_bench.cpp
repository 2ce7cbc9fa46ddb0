// Forward+backward throughput of each MoE variant's layer at equal expert parameter count
// (E·h = 8·2048 at d = 512), with the expert FLOPs per token each one actually spent, measured from
// its statistics (experts that processed a token × 4·d·h forward multiply-adds ×2). A dense FFN with
// the hidden size of one large expert is timed in the same run as the reference.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "moe/moe.h"

namespace {


struct Variant {
  std::string name;
  int64_t experts, hidden;
  std::function<std::shared_ptr<moe::FeedForwardBlockImpl>()> make;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"MoE variants: forward+backward throughput at equal parameter count (CPU)"};
  int reps = 3, warmup = 1;
  int64_t tokens = 4096;
  app.set_config("--config", "", "TOML file with these options (the command line overrides it)");
  app.add_option("--reps", reps, "timed repetitions (median reported)")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed repetitions first")->check(CLI::NonNegativeNumber);
  app.add_option("--tokens", tokens, "tokens per batch")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    const int64_t d = 512;
    auto layer = [](moe::MoELayerOptions o) -> std::shared_ptr<moe::FeedForwardBlockImpl> {
      return std::make_shared<moe::MoELayerImpl>(o);
    };
    auto topk = [&](int64_t k) {
      moe::MoELayerOptions o(d, 8, 2048, k);
      return layer(o);
    };
    std::vector<Variant> variants{
        {"Switch (top-1)", 8, 2048, [&] { return topk(1); }},
        {"GShard (top-2)", 8, 2048, [&] { return topk(2); }},
        {"XMoE (threshold 0.9, 64 small experts)", 64, 256,
         [&] { return layer(moe::xmoe_layer_options(d, 64, 256)); }},
        {"THOR (stochastic)", 8, 2048, [&] { return layer(moe::thor_layer_options(d, 8, 2048)); }},
        {"SMoE (strata 2,6)", 8, 2048,
         [&] { return std::make_shared<moe::StratifiedMoEBlockImpl>(moe::smoe_block_options(d, {2, 6}, 2048)); }},
        {"expert choice (k=2)", 8, 2048,
         [&] {
           moe::MoELayerOptions o(d, 8, 2048, 2);
           o.router = "expert_choice";
           return layer(o);
         }},
        {"hash (position)", 8, 2048,
         [&] {
           moe::MoELayerOptions o(d, 8, 2048, 1);
           o.router = "hash";
           o.router_options.hash_by = "position";
           return layer(o);
         }},
        {"dense FFN (h=2048, reference)", 1, 2048,
         [&] {
           moe::FFNOptions f;
           f.d_model = d;
           f.hidden = 2048;
           return std::shared_ptr<moe::FeedForwardBlockImpl>(std::make_shared<moe::DenseFFNImpl>(moe::DenseFFNOptions{f}));
         }},
    };
    std::printf("MoE variants, forward+backward, CPU, %d threads, fp32, d=%lld, T=%lld, %d reps (median), expert params E·h = 16384·d\n",
                torch::get_num_threads(), static_cast<long long>(d), static_cast<long long>(tokens), reps);
    std::printf("| variant | E × h | experts/token | passes/token | expert GFLOP/token (fwd) | vs top-2 | ms | tokens/s |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
    for (const auto& v : variants) {
      torch::manual_seed(0);
      auto block = v.make();
      block->train();
      auto x = torch::randn({tokens / 512, 512, d}, torch::requires_grad());
      moe::MoEStats stats;
      auto step = [&] {
        block->zero_grad();
        auto out = block->forward(x);
        (out.output.sum() + out.stats.total_aux_loss()).backward();
        stats = out.stats;
      };
      const double ms = moe::bench::median_ms(step, warmup, reps);
      const double experts_per_token = stats.experts_per_token.item<double>();
      const double flops = experts_per_token * 4.0 * d * v.hidden / 1e9;  // 2 matmuls × 2 FLOP per MAC
      const double top2 = 2 * 4.0 * d * 2048 / 1e9;
      std::printf("| %s | %lld × %lld | %.2f | %.2f | %.4f | %.2f | %.1f | %.0f |\n", v.name.c_str(),
                  static_cast<long long>(v.experts), static_cast<long long>(v.hidden), experts_per_token,
                  stats.passes_per_token.item<double>(), flops, flops / top2, ms, tokens / (ms / 1000.0));
      std::fflush(stdout);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
