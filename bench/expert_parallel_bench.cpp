// Expert parallelism on CPU processes over Gloo (loopback): all-to-all-v throughput and the
// MoE-layer forward+backward step time against the world size (1, 2, 4), with the single-process
// layer on the same per-rank tokens as the reference in the same run. With --backend nccl (a CUDA
// build on a GPU machine): the NCCL all-to-all-v at world size 1 against a device-to-device copy of
// the same bytes (the MoE layer on CUDA needs the CUDA tier's dispatch/combine, issue 5).
//   build/bin/bench_expert_parallel [--tokens 2048] [--d 256] [--hidden 512] [--experts 8] [--reps 5]
//   build/bin/bench_expert_parallel --backend nccl --tokens 16384 --d 4096
// Run without RANK in the environment it starts itself on 1, 2 and 4 processes (launch_local) and
// prints the table; each rank run writes its medians to a file the parent reads.
#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "moe/layers/moe_layer.h"
#include "moe/parallel/communicator.h"
#include "moe/parallel/launcher.h"
#include "moe/parallel/process_groups.h"
#include "moe/parallel/rendezvous.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double time_ms(int reps, F&& f) {
  f();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  return median(t);
}

struct Args {
  int64_t tokens = 2048, d = 256, hidden = 512, experts = 8;
  int reps = 5;
  std::string out, backend = "gloo";
};

// NCCL at world size 1 (one process, a TCP store on loopback): the all-to-all-v of 2·T rows of d
// bf16 values against a plain device copy of the same bytes, both timed with the stream synchronised.
int nccl_main(const Args& a) {
  if (!at::hasCUDA()) {
    std::fprintf(stderr, "bench_expert_parallel: --backend nccl needs a GPU\n");
    return 1;
  }
  moe::CommunicatorOptions co;
  co.backend = "nccl";
  moe::DistributedEnv env;
  env.master_port = moe::find_free_port();
  auto comm = moe::make_communicator(co, env);
  const auto cuda = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  auto in = at::randn({2 * a.tokens, a.d}, cuda), out = at::empty_like(in), copy = at::empty_like(in);
  const std::vector<int64_t> splits{2 * a.tokens};
  const double a2a = time_ms(a.reps, [&] { comm->all_to_all_single(out, in, splits, splits); });
  const double cp = time_ms(a.reps, [&] {
    copy.copy_(in);
    comm->barrier();  // waits for the stream, like the collective does
  });
  const double gb = 2.0 * static_cast<double>(in.numel()) * 2.0 / 1e9;  // read + write
  std::printf("| backend | rows | d | all-to-all-v ms | GB/s (read+write) | device copy ms | a2a / copy |\n"
              "|---|---:|---:|---:|---:|---:|---:|\n| nccl, 1 rank | %lld | %lld | %.3f | %.1f | %.3f | %.2f |\n",
              static_cast<long long>(2 * a.tokens), static_cast<long long>(a.d), a2a, gb / (a2a / 1e3), cp, a2a / cp);
  return 0;
}

// One rank: times the exchange of T·2 rows (top-2) spread evenly, and the layer step.
int rank_main(const Args& a) {
  at::set_num_threads(1);
  moe::CommunicatorOptions co;
  co.backend = "gloo";
  co.timeout_s = 120;
  const auto env = moe::read_distributed_env();
  auto world = moe::make_communicator(co, env);
  const int W = world->size();
  auto groups = moe::make_parallel_groups(world, W);
  // all-to-all-v: every rank sends 2·T/W rows of d fp32 to every rank.
  const int64_t rows = 2 * a.tokens;
  auto in = at::randn({rows, a.d});
  auto out = at::empty_like(in);
  std::vector<int64_t> splits(static_cast<size_t>(W), rows / W);
  splits.back() += rows - (rows / W) * W;
  const double a2a_ms = time_ms(a.reps, [&] { world->all_to_all_single(out, in, splits, splits); });
  // The layer: top-2 over E experts sharded over W ranks, T tokens per rank.
  torch::manual_seed(1);
  moe::MoELayerOptions o(a.d, a.experts, a.hidden, 2);
  o.expert_group = groups.expert;
  moe::MoELayer layer(o);
  auto x = at::randn({a.tokens, a.d}).set_requires_grad(true);
  const double layer_ms = time_ms(a.reps, [&] {
    auto y = layer->forward(x);
    (y.output.sum() + y.stats.total_aux_loss()).backward();
  });
  // Reference: the single-process layer (all experts here) on the same tokens.
  torch::manual_seed(1);
  moe::MoELayer local(moe::MoELayerOptions(a.d, a.experts, a.hidden, 2));
  const double local_ms = time_ms(a.reps, [&] {
    auto y = local->forward(x);
    (y.output.sum() + y.stats.total_aux_loss()).backward();
  });
  // Slowest rank decides.
  auto t = at::tensor({a2a_ms, layer_ms, local_ms}, at::kDouble);
  world->all_reduce(t, moe::ReduceOp::kMax);
  if (world->rank() == 0) {
    std::ofstream(a.out) << t[0].item<double>() << " " << t[1].item<double>() << " " << t[2].item<double>() << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Expert parallelism over Gloo: all-to-all-v and MoE layer step time against world size"};
  Args a;
  app.add_option("--tokens", a.tokens, "tokens per rank");
  app.add_option("--d", a.d, "model width");
  app.add_option("--hidden", a.hidden, "expert hidden width");
  app.add_option("--experts", a.experts, "experts (divisible by 4)");
  app.add_option("--reps", a.reps, "timed repetitions (median)");
  app.add_option("--out", a.out, "internal: where a rank run writes its result");
  app.add_option("--backend", a.backend, "gloo (CPU processes, 1/2/4 ranks) or nccl (one GPU, world size 1)")
      ->check(CLI::IsMember({"gloo", "nccl"}));
  CLI11_PARSE(app, argc, argv);
  try {
    if (a.backend == "nccl") return nccl_main(a);
    if (std::getenv("RANK") != nullptr) return rank_main(a);
    std::printf("expert parallelism over Gloo on loopback, CPU, 1 thread per rank: T=%lld tokens/rank, d=%lld, "
                "h=%lld, E=%lld, top-2, fp32, median of %d\n\n",
                static_cast<long long>(a.tokens), static_cast<long long>(a.d), static_cast<long long>(a.hidden),
                static_cast<long long>(a.experts), a.reps);
    std::printf("| ranks | all-to-all-v ms | GB/s per rank (sent+received) | EP layer fwd+bwd ms | "
                "1-process layer, same tokens, ms | EP / 1-process |\n|---:|---:|---:|---:|---:|---:|\n");
    for (int W : {1, 2, 4}) {
      const auto out = (std::filesystem::temp_directory_path() / ("moe-bench-ep-" + std::to_string(W))).string();
      std::vector<std::string> command{argv[0], "--tokens", std::to_string(a.tokens), "--d", std::to_string(a.d),
                                       "--hidden", std::to_string(a.hidden), "--experts", std::to_string(a.experts),
                                       "--reps", std::to_string(a.reps), "--out", out};
      moe::LaunchOptions lo;
      lo.nproc = W;
      lo.timeout_s = 600;
      auto r = moe::launch_local(command, lo);
      if (r.exit_code != 0) {
        std::fprintf(stderr, "world size %d failed:\n%s", W, r.summary.c_str());
        return 1;
      }
      double a2a = 0, layer = 0, local = 0;
      std::ifstream(out) >> a2a >> layer >> local;
      const double bytes = 2.0 * 2.0 * static_cast<double>(a.tokens) * static_cast<double>(a.d) * 4.0 *
                           (W - 1) / std::max(1, W);  // rows that leave the rank, sent and received
      std::printf("| %d | %.2f | %.2f | %.1f | %.1f | %.2f |\n", W, a2a, W > 1 ? bytes / (a2a * 1e6) : 0.0, layer,
                  local, layer / local);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_expert_parallel: error: %s\n", e.what());
    return 1;
  }
}
