// The program that tests/parallel/expert_parallel_test.cpp starts on several processes (through
// launch_local, Gloo on loopback). One scenario per run:
//   layer <router> <ep_size> <outdir>   the expert-parallel layer against the single-process layer
//                                       (ep_size < W: expert gradients reduced over expert-data groups)
//   grads <ep_size> <outdir>            bucketed gradient sums (started during backward) and the norm
//   dead <exit|hang> <outdir>           rank 1 dies or hangs; rank 0 must fail with a clear error
//   mismatch <outdir>                   rank 1 starts with another config; every rank must refuse
//   reshard <save|load> <ep_size> <dir> a model saved with one expert-parallel size, loaded with another
// Each rank writes <outdir>/rank<r>.txt ("OK ..." or the failure) and exits 0 on success, 42 when
// the expected error was raised, 1 otherwise.
#include <ATen/ATen.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "moe/core/error.h"
#include "moe/layers/expert_parallel.h"
#include "moe/layers/moe_layer.h"
#include "moe/layers/presets.h"
#include "moe/layers/stratified_moe_block.h"
#include "moe/models/transformer.h"
#include "moe/parallel/communicator.h"
#include "moe/parallel/grad_sync.h"
#include "moe/parallel/process_groups.h"
#include "moe/parallel/rendezvous.h"
#include "moe/train/sharded_state.h"

namespace {

using namespace moe;

struct Report {
  std::string dir;
  int rank = 0;
  std::ostringstream text;
  void write() const { std::ofstream(dir + "/rank" + std::to_string(rank) + ".txt") << text.str(); }
};

std::shared_ptr<Communicator> world_from_env(double timeout_s = 60) {
  CommunicatorOptions o;
  o.backend = "gloo";
  o.timeout_s = timeout_s;
  return make_communicator(o, read_distributed_env());
}

// Tokens on rank q: uneven, and rank 1 has none.
int64_t tokens_of(int q) { return q == 1 ? 0 : 5 + 4 * q; }

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0 && b.numel() == 0) return 0.0;
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// A block with the chosen router and E experts, sharded over `group` when it is set.
std::shared_ptr<FeedForwardBlockImpl> make_block(const std::string& router, int64_t d, int64_t E,
                                                 const std::shared_ptr<Communicator>& group) {
  if (router == "smoe") {
    auto o = smoe_block_options(d, {2, 2, E - 4}, 12, 0.0);
    o.expert_group = group;
    return std::make_shared<StratifiedMoEBlockImpl>(o);
  }
  MoELayerOptions o(d, E, 12, 2);
  if (router == "threshold") {
    o = xmoe_layer_options(d, E, 12, false);
    o.router_options.threshold = 0.6;
  } else if (router == "stochastic") {
    o = thor_layer_options(d, E, 12);
    o.router_options.train_granularity = "token";
  } else {
    o.router = router;  // topk (GShard top-2 with sampled second expert), expert_choice
  }
  o.router_options.capacity.capacity_factor = 1.0;  // small enough to drop some assignments
  o.experts.ffn.activation_dropout = 0;
  o.expert_group = group;
  return std::make_shared<MoELayerImpl>(o);
}

// Loss of one rank: <y, g> + the aux losses at their coefficients.
at::Tensor loss_of(const MoEOutput& out, const at::Tensor& g) {
  return (out.output * g).sum() + out.stats.total_aux_loss();
}

int scenario_layer(const std::string& router, int P, Report& report) {
  auto world = world_from_env();
  const int W = world->size(), r = world->rank();
  auto groups = make_parallel_groups(world, P);
  const int64_t d = 8, E = 8;
  auto input = [&](int q) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + q);
    return std::make_pair(at::randn({tokens_of(q), d}, gen, at::kFloat), at::randn({tokens_of(q), d}, gen, at::kFloat));
  };
  // The reference: one process holding every expert, run on each rank's tokens in turn.
  torch::manual_seed(7);
  auto reference = make_block(router, d, E, nullptr);
  reference->train();
  at::Tensor ref_y, ref_dx;
  for (int q = 0; q < W; ++q) {
    auto [x, g] = input(q);
    x.set_requires_grad(true);
    torch::manual_seed(100 + q);
    auto out = reference->forward(x);
    auto loss = loss_of(out, g);
    if (loss.requires_grad()) loss.backward();  // no tokens and no router parameters: nothing to do
    if (q == r) {
      ref_y = out.output.detach();
      ref_dx = x.grad();
    }
  }
  // The expert-parallel layer: the same initial weights (same seed), this rank's tokens only.
  torch::manual_seed(7);
  auto layer = make_block(router, d, E, groups.expert);
  layer->train();
  auto [x, g] = input(r);
  x.set_requires_grad(true);
  torch::manual_seed(100 + r);
  auto out = layer->forward(x);
  loss_of(out, g).backward();  // always part of the graph here: the exchange is a collective
  // Replicated (router, LayerNorm) gradients: summed over the world; expert gradients: over the
  // ranks holding the same experts (expert-data-parallel group).
  auto ref_params = reference->named_parameters();
  double worst = std::max(max_diff(out.output, ref_y), max_diff(x.grad(), ref_dx));
  report.text << "tokens " << tokens_of(r) << " output/input-grad diff " << worst;
  int64_t checked = 0;
  for (auto& p : layer->named_parameters()) {
    auto grad = p.value().grad().defined() ? p.value().grad().clone() : at::zeros_like(p.value());
    if (expert_id_of(p.key()) < 0) {
      world->all_reduce(grad);
    } else {
      groups.expert_data->all_reduce(grad);
    }
    const auto* ref = ref_params.find(p.key());
    MOE_CHECK(ref != nullptr, "the reference has no parameter ", p.key());
    auto ref_grad = ref->grad().defined() ? ref->grad() : at::zeros_like(*ref);
    const double wd = max_diff(p.value(), *ref), gd = max_diff(grad, ref_grad);
    worst = std::max({worst, wd, gd});
    ++checked;
  }
  report.text << "; " << checked << " parameters; worst diff " << worst << "\n";
  const bool ok = worst <= 1e-5;
  report.text << (ok ? "OK" : "FAIL") << "\n";
  return ok ? 0 : 1;
}

int scenario_grads(int P, Report& report) {
  auto world = world_from_env();
  const int r = world->rank();
  auto groups = make_parallel_groups(world, P);
  torch::manual_seed(3);
  auto layer = make_block("topk", 8, 8, groups.expert);
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (auto& p : layer->named_parameters()) named.emplace_back(p.key(), p.value());
  GradientSynchronizer sync(named, groups, /*bucket_mb=*/0.0005);  // ~500 bytes: many buckets
  double worst = 0;
  for (int update = 0; update < 2; ++update) {
    layer->zero_grad();
    // Two micro-batches; the second backward is the armed one.
    for (int micro = 0; micro < 2; ++micro) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(10 * update + micro + 100 * r);
      auto x = at::randn({tokens_of(r), 8}, gen, at::kFloat);
      auto out = layer->forward(x);
      if (micro == 1) sync.arm();
      ((out.output * out.output).sum() + out.stats.total_aux_loss()).backward();
    }
    // The expected sums, parameter by parameter: local copies now, summed after synchronize() (whose
    // buckets may already be in flight: collectives must keep one order on every rank).
    std::vector<at::Tensor> expected;
    for (auto& [name, p] : named) expected.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
    sync.synchronize();
    double dense_sq = 0, expert_sq = 0;
    for (size_t i = 0; i < named.size(); ++i) {
      const bool expert = expert_id_of(named[i].first) >= 0;
      (expert ? *groups.expert_data : *world).all_reduce(expected[i]);
      (expert ? expert_sq : dense_sq) += expected[i].to(at::kDouble).pow(2).sum().item<double>();
    }
    for (size_t i = 0; i < named.size(); ++i) {
      const auto& p = named[i].second;  // undefined: no gradient anywhere in its group (counts as 0)
      worst = std::max(worst, max_diff(p.grad().defined() ? p.grad() : at::zeros_like(p), expected[i]));
    }
    auto e = at::tensor({expert_sq}, at::kDouble);
    groups.expert->all_reduce(e);
    const double norm = std::sqrt(dense_sq + e.item<double>());
    worst = std::max(worst, std::abs(sync.global_norm() - norm) / std::max(1.0, norm));
    report.text << "update " << update << ": " << sync.num_buckets() << " buckets, " << sync.started_during_backward()
                << " started during backward; norm " << norm << "\n";
  }
  report.text << "worst diff " << worst << "\n";
  const bool ok = worst <= 1e-6 && sync.started_during_backward() > 0;
  report.text << (ok ? "OK" : "FAIL") << "\n";
  return ok ? 0 : 1;
}

int scenario_dead(const std::string& mode, Report& report) {
  auto world = world_from_env(/*timeout_s=*/3);
  const int r = world->rank();
  auto groups = make_parallel_groups(world, world->size());
  torch::manual_seed(7);
  auto layer = make_block("topk", 8, 4 * world->size(), groups.expert);
  auto x = at::randn({6, 8});
  layer->forward(x);  // everyone is alive for the first call
  if (r == 1) {
    if (mode == "exit") std::_Exit(0);  // gone without a word (exit 0: the launcher does not step in)
    std::this_thread::sleep_for(std::chrono::seconds(600));  // hangs; the launcher stops it
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    layer->forward(x);
  } catch (const moe::Error& e) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    report.text << "after " << s << " s: " << e.what() << "\n";
    return 42;
  }
  report.text << "no error although rank 1 " << (mode == "exit" ? "exited" : "hangs") << "\n";
  return 1;
}

int scenario_mismatch(Report& report) {
  auto world = world_from_env(10);
  std::string config = "[train]\nlr = 0.001\nwarmup = 20\n";
  if (world->rank() == 1) config = "[train]\nlr = 0.003\nwarmup = 20\n";
  try {
    check_same_on_all_ranks(*world, config, "configuration");
  } catch (const moe::Error& e) {
    report.text << e.what() << "\n";
    return 42;
  }
  report.text << "no error for differing configs\n";
  return 1;
}

// A small translation model with MoE slots in encoder and decoder (gshard) and an SMoE block.
TransformerModel reshard_model(const std::shared_ptr<Communicator>& group, const std::string& variant) {
  TransformerOptions o;
  o.vocab_size = 40;
  o.d_model = 16;
  o.heads = 2;
  o.encoder_layers = 2;
  o.decoder_layers = 2;
  o.ffn_hidden = 24;
  o.dropout = 0;
  o.max_positions = 32;
  o.moe.variant = variant;
  o.moe.num_experts = 4;
  o.moe.strata = "2,2";
  o.moe.every = 1;
  o.moe.router.set("sample_in_eval", false);
  return TransformerModel(o, group);
}

int scenario_reshard(const std::string& mode, int P, const std::string& dir, Report& report) {
  auto world = world_from_env();
  auto groups = make_parallel_groups(world, P);
  double worst = 0;
  for (const std::string variant : {"gshard", "smoe"}) {
    torch::manual_seed(mode == "save" ? 11 : 99);  // loading must not rely on the seed
    auto model = reshard_model(groups.expert, variant);
    const auto prefix = dir + "/model-" + variant;
    if (mode == "load") {
      const auto shard = expert_shard(4, groups.expert.get(), "reshard");
      auto state =
          load_sharded_state(prefix, [&](int64_t id) { return id >= shard.first && id < shard.first + shard.count; });
      load_module_state(*model, state, prefix);
    }
    model->eval();
    torch::NoGradGuard no_grad;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
    auto src = at::randint(4, 40, {3, 7}, gen, at::kLong), tgt = at::randint(4, 40, {3, 6}, gen, at::kLong);
    auto logits = model->forward(src, tgt).logits;
    if (mode == "save") {
      save_sharded_state(prefix, module_state(*model), groups);
      if (world->rank() == 0) torch::save(logits, prefix + ".logits.pt");
      world->barrier();
    } else {
      at::Tensor saved;
      torch::load(saved, prefix + ".logits.pt");
      worst = std::max(worst, max_diff(logits, saved));
    }
  }
  report.text << mode << " with expert-parallel size " << P << " of " << world->size() << "; worst logit diff " << worst
              << "\n";
  const bool ok = worst <= 1e-5;  // experts run over other row groupings: fp32 rounding only
  report.text << (ok ? "OK" : "FAIL") << "\n";
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);
  std::vector<std::string> a(argv + 1, argv + argc);
  Report report;
  try {
    report.rank = read_distributed_env().rank;
    MOE_CHECK(!a.empty(), "usage: moe_parallel_worker <scenario> ...");
    report.dir = a.back();
    int code = 1;
    if (a[0] == "layer" && a.size() == 4)
      code = scenario_layer(a[1], std::stoi(a[2]), report);
    else if (a[0] == "grads" && a.size() == 3)
      code = scenario_grads(std::stoi(a[1]), report);
    else if (a[0] == "dead" && a.size() == 3)
      code = scenario_dead(a[1], report);
    else if (a[0] == "mismatch" && a.size() == 2)
      code = scenario_mismatch(report);
    else if (a[0] == "reshard" && a.size() == 4)
      code = scenario_reshard(a[1], std::stoi(a[2]), a[3], report);
    else
      MOE_THROW("unknown scenario or wrong arguments: ", a[0]);
    report.write();
    return code;
  } catch (const c10::Error& e) {
    report.text << "FAIL exception: " << e.what_without_backtrace() << "\n";
    if (!report.dir.empty()) report.write();
    return 1;
  } catch (const std::exception& e) {
    report.text << "FAIL exception: " << e.what() << "\n";
    if (!report.dir.empty()) report.write();
    std::cerr << "rank " << report.rank << ": " << e.what() << "\n";
    return 1;
  }
}
