// MoE layer forward+backward throughput on CPU, against two references timed in the same run:
//   one-hot: the dense one-hot einsum formulation of fairseq/DeepSpeed ([T, E, C] dispatch and
//            combine tensors, experts as batched matmuls over fixed-capacity buffers), fed the same
//            routing decision as moe;
//   dense:   a dense FFN with the same active compute (hidden = top_k · h), the floor an MoE layer
//            would reach if routing, dispatch and combine cost nothing.
// Reports medians over repetitions and the ratios; absolute times are machine-dependent.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench_util.h"
#include "dense_reference.h"
#include "moe/moe.h"

namespace {

struct Config {
  std::string name;
  int64_t tokens, d, h, experts, top_k;
};


}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"MoE layer forward+backward benchmark (CPU)"};
  int reps = 5, warmup = 1;
  int64_t tokens = 4096;
  std::string only;
  app.set_config("--config", "", "TOML file with these options (the command line overrides it)");
  app.add_option("--reps", reps, "timed repetitions (median reported)")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed repetitions first")->check(CLI::NonNegativeNumber);
  app.add_option("--tokens", tokens, "tokens per batch")->check(CLI::PositiveNumber);
  app.add_option("--only", only, "run only the configurations whose name contains this text");
  CLI11_PARSE(app, argc, argv);

  try {
    torch::manual_seed(0);
    std::vector<Config> configs{{"E=8 h=2048 top-2", tokens, 512, 2048, 8, 2},
                                {"E=64 h=256 top-8", tokens, 512, 256, 64, 8}};
    std::printf("MoE layer forward+backward, CPU, %d threads, fp32, capacity factor 1.0, %d reps (median)\n",
                torch::get_num_threads(), reps);
    std::printf("| config (d=512, T=%lld) | moe ms | one-hot einsum ms | dense FFN (h=k·h) ms | moe tokens/s | moe vs one-hot | moe vs dense |\n",
                static_cast<long long>(tokens));
    std::printf("|---|---|---|---|---|---|---|\n");
    for (const auto& c : configs) {
      if (!only.empty() && c.name.find(only) == std::string::npos) continue;
      moe::MoELayerOptions options(c.d, c.experts, c.h, c.top_k);
      options.router_options.second_expert_policy = moe::SecondExpertPolicy::kGreedy;
      moe::MoELayer layer(options);
      layer->train();
      moe::FFNOptions dense_options = options.experts.ffn;
      dense_options.hidden = c.top_k * c.h;
      moe::DenseFFN dense(moe::DenseFFNOptions{dense_options});
      auto x = torch::randn({c.tokens, c.d}, torch::requires_grad());

      auto run_moe = [&] {
        layer->zero_grad();
        auto out = layer->forward(x);
        (out.output.sum() + out.stats.total_aux_loss()).backward();
      };
      auto run_one_hot = [&] {
        layer->zero_grad();
        auto plan = layer->router->route(x);
        auto routing = moe::testing::one_hot_routing(plan.expert_index, plan.weight, c.experts, plan.capacity,
                                                     plan.normalization);
        auto y = moe::testing::one_hot_moe_batched(x, routing, *layer->experts);
        (y.sum() + plan.aux_losses.at("balance").weighted()).backward();
      };
      auto run_dense = [&] {
        dense->zero_grad();
        dense->forward(x).output.sum().backward();
      };
      const double t_moe = moe::bench::median_ms(run_moe, warmup, reps);
      const double t_one_hot = moe::bench::median_ms(run_one_hot, warmup, reps);
      const double t_dense = moe::bench::median_ms(run_dense, warmup, reps);
      std::printf("| %s | %.1f | %.1f | %.1f | %.0f | %.2fx faster | %.2fx the time |\n", c.name.c_str(), t_moe,
                  t_one_hot, t_dense, c.tokens / (t_moe / 1000.0), t_one_hot / t_moe, t_moe / t_dense);
      std::fflush(stdout);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
