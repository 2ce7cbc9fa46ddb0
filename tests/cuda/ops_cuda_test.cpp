// *_CUDA tests of the CUDA glue (CUDA tier): the public ops on CUDA tensors against the same ops on
// the CPU (layouts identical; dispatch/combine, the router epilogue and grouped GEMM forward and
// backward within per-dtype tolerances), and a full MoELayer forward + backward on the GPU against the
// CPU for every router. Fresh random inputs each run. Skipped without a CUDA device, and compiled to a
// single skip where moe was built without the CUDA tier.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>

#include "moe/core/build_config.h"
#include "moe/core/error.h"
#include "moe/layers/moe_layer.h"
#include "moe/layers/stratified_moe_block.h"
#include "moe/ops/dispatch_combine.h"
#include "moe/ops/grouped_gemm.h"
#include "moe/ops/layout.h"
#include "moe/ops/router_epilogue.h"
#include "tolerances.h"

namespace moe {
namespace {

using testing::all_close;
using testing::tolerance_for;

#if MOE_WITH_CUDA

#define MOE_REQUIRE_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

uint64_t fresh_seed() {
  const auto seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  std::printf("[ seed     ] %llu\n", static_cast<unsigned long long>(seed));
  return seed;
}

const at::Device kGpu(at::kCUDA, 0);

at::Tensor random_routing(int64_t T, int64_t K, int64_t E, at::Generator& gen) {
  return at::rand({T, E}, gen).argsort(/*stable=*/true, /*dim=*/1, /*descending=*/false).narrow(1, 0, K).contiguous();
}

TEST(BuildLayout_CUDA, SameLayoutAsTheCpu) {
  MOE_REQUIRE_GPU();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  auto ids = random_routing(3000, 2, 16, gen);
  auto priority = at::rand({3000, 2}, gen);
  for (int64_t capacity : {int64_t{-1}, int64_t{300}}) {
    for (bool with_priority : {false, true}) {
      auto p = with_priority ? priority : at::Tensor();
      auto cpu = build_layout(ids, 16, capacity, p);
      auto gpu = build_layout(ids.to(kGpu), 16, capacity, with_priority ? p.to(kGpu) : at::Tensor());
      EXPECT_TRUE(gpu.slot_row.is_cuda());
      EXPECT_TRUE(gpu.tokens_per_expert.device().is_cpu());
      EXPECT_TRUE(at::equal(gpu.row_token.cpu(), cpu.row_token));
      EXPECT_TRUE(at::equal(gpu.row_slot.cpu(), cpu.row_slot));
      EXPECT_TRUE(at::equal(gpu.slot_row.cpu(), cpu.slot_row));
      EXPECT_TRUE(at::equal(gpu.expert_offsets.cpu(), cpu.expert_offsets));
      EXPECT_TRUE(at::equal(gpu.tokens_per_expert, cpu.tokens_per_expert));
      EXPECT_TRUE(at::equal(gpu.requested_per_expert, cpu.requested_per_expert));
      EXPECT_EQ(gpu.num_dropped.item<int64_t>(), cpu.num_dropped.item<int64_t>());
    }
  }
}

TEST(BuildLayout_CUDA, BadRoutingNamesTheSlotLikeTheCpu) {
  MOE_REQUIRE_GPU();
  auto ids = at::tensor({0, 1, 2, 9}, at::kLong).view({2, 2});
  std::string cpu_message, gpu_message;
  try {
    build_layout(ids, 4, -1);
  } catch (const Error& e) {
    cpu_message = e.what();
  }
  try {
    build_layout(ids.to(kGpu), 4, -1);
  } catch (const Error& e) {
    gpu_message = e.what();
  }
  EXPECT_EQ(cpu_message, "build_layout: expert_index[1, 1] = 9 is outside [-1, 4)");
  EXPECT_EQ(gpu_message, cpu_message);
}

TEST(DispatchCombine_CUDA, AutogradMatchesTheCpuInEveryDtype) {
  MOE_REQUIRE_GPU();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf, at::kDouble}) {
    SCOPED_TRACE(c10::toString(dtype));
    const int64_t T = 1024, K = 2, E = 8, d = 136;
    auto ids = random_routing(T, K, E, gen);
    auto cpu_layout = build_layout(ids, E, 200);
    auto gpu_layout = build_layout(ids.to(kGpu), E, 200);
    auto x = at::randn({T, d}, gen).to(dtype);
    auto w = at::rand({T, K}, gen);
    auto dy = at::randn({T, d}, gen).to(dtype);
    auto run = [&](const DispatchLayout& layout, at::Device dev) {
      auto xi = x.to(dev).detach().requires_grad_(true);
      auto wi = w.to(dev).detach().requires_grad_(true);
      auto packed = dispatch(xi, layout);
      auto y = combine(packed * 2 + 1, layout, wi);  // a stand-in expert between the two
      y.backward(dy.to(dev));
      return std::vector<at::Tensor>{y.detach().cpu(), xi.grad().cpu(), wi.grad().cpu()};
    };
    auto ref = run(cpu_layout, at::kCPU);
    auto got = run(gpu_layout, kGpu);
    const auto tol = tolerance_for(dtype);
    EXPECT_TRUE(all_close(got[0], ref[0], tol));
    EXPECT_TRUE(all_close(got[1], ref[1], tol));
    EXPECT_TRUE(all_close(got[2], ref[2], {tol.atol * 20, tol.rtol * 20}));
  }
}

TEST(RouterEpilogue_CUDA, FusedSelectionAndSoftmaxGradientMatchTheCpu) {
  MOE_REQUIRE_GPU();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  auto logits = at::randn({2048, 64}, gen) * 2;
  auto g = at::randn({2048, 64}, gen);
  for (int mode = 0; mode < 2; ++mode) {
    auto run = [&](at::Device dev) {
      auto l = logits.to(dev).detach().requires_grad_(true);
      auto s = mode == 0 ? softmax_topk(l, 8) : softmax_threshold(l, 0.9);
      (s.probs * g.to(dev)).sum().backward();
      return std::vector<at::Tensor>{s.probs.detach().cpu(), s.index.cpu(), l.grad().cpu()};
    };
    EXPECT_TRUE(router_epilogue_fused(logits.to(kGpu), 8));
    auto ref = run(at::kCPU);
    auto got = run(kGpu);
    EXPECT_TRUE(all_close(got[0], ref[0], {1e-6, 1e-5}));
    if (mode == 0) {
      EXPECT_TRUE(at::equal(got[1], ref[1]));
    } else {
      // The two softmaxes differ in the last bits, which may move a token's 0.9 crossing: the rule
      // is checked on the GPU's own probabilities.
      EXPECT_TRUE(at::equal(got[1], threshold_select(got[0], 0.9).first));
    }
    EXPECT_TRUE(all_close(got[2], ref[2], {1e-6, 1e-5}));
  }
}

TEST(GroupedLinear_CUDA, BothBackendsMatchFloat64WithEmptyGroups) {
  MOE_REQUIRE_GPU();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  const std::vector<int64_t> rows{100, 0, 37, 256, 0, 1, 90, 3};
  int64_t N = 0;
  for (auto r : rows) N += r;
  const int64_t G = 8, in = 64, out = 48;
  auto x = at::randn({N, in}, gen);
  auto w = at::randn({G, in, out}, gen) * 0.1;
  auto b = at::randn({G, out}, gen);
  auto dy = at::randn({N, out}, gen);
  auto run = [&](at::Device dev, c10::ScalarType dtype, GroupedGemmBackend backend) {
    auto xi = x.to(dev, dtype).detach().requires_grad_(true);
    auto wi = w.to(dev, dtype).detach().requires_grad_(true);
    auto bi = b.to(dev, dtype).detach().requires_grad_(true);
    auto y = grouped_linear(xi, wi, bi, rows, backend);
    y.backward(dy.to(dev, dtype));
    return std::vector<at::Tensor>{y.detach().cpu().to(at::kDouble), xi.grad().cpu().to(at::kDouble),
                                   wi.grad().cpu().to(at::kDouble), bi.grad().cpu().to(at::kDouble)};
  };
  auto ref = run(at::kCPU, at::kDouble, GroupedGemmBackend::kPerGroup);
  EXPECT_EQ(ref[2][1].abs().max().item<double>(), 0.0);  // an empty group gets a zero gradient
  struct Variant {
    c10::ScalarType dtype;
    GroupedGemmBackend backend;
  };
  std::vector<Variant> variants{{at::kFloat, GroupedGemmBackend::kPerGroup},
                                {at::kBFloat16, GroupedGemmBackend::kPerGroup}};
  if (resolve_grouped_gemm_backend(x.to(kGpu, at::kBFloat16), w.to(kGpu, at::kBFloat16)) ==
      GroupedGemmBackend::kGroupedMM) {
    variants.push_back({at::kBFloat16, GroupedGemmBackend::kGroupedMM});
  }
  const int64_t fallbacks_before = grouped_gemm_fallbacks();
  for (const auto& v : variants) {
    SCOPED_TRACE(std::string(c10::toString(v.dtype)) + " " + to_string(v.backend));
    auto got = run(kGpu, v.dtype, v.backend);
    // Relative to the largest element: the sums run over up to 256 rows.
    const double rel = v.dtype == at::kFloat ? 2e-3 : 3e-2;  // tf32 may be on for fp32 matmuls
    for (size_t i = 0; i < got.size(); ++i) {
      const double scale = ref[i].abs().max().item<double>();
      EXPECT_TRUE(all_close(got[i], ref[i], {rel * scale, 0.0})) << "output " << i;
    }
  }
  EXPECT_EQ(grouped_gemm_fallbacks(), fallbacks_before) << "at::_grouped_mm rejected an operand";
}

// Every router: the layer in fp32 on the GPU against the same layer on the CPU, forward and backward,
// in evaluation mode (no sampling, no dropout), with a capacity that drops some tokens. The layer's
// own parameters are drawn on the CPU under one seed and copied to the GPU.
TEST(MoELayer_CUDA, ForwardAndBackwardMatchTheCpuForEveryRouter) {
  MOE_REQUIRE_GPU();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  for (const std::string router : {"topk", "threshold", "stochastic", "expert_choice", "hash"}) {
    for (int64_t k : {int64_t{1}, int64_t{2}}) {
      if (k == 2 && router != "topk") continue;
      SCOPED_TRACE(router + " k=" + std::to_string(k));
      MoELayerOptions o(32, 8, 48, k);
      o.router = router;
      o.router_options.capacity.capacity_factor = 1.0;
      o.router_options.threshold = 0.6;
      // THOR draws its expert at random on either device: with every expert a copy of the first, the
      // output and the input gradient do not depend on the draw (the per-expert gradients do).
      const bool random_draw = router == "stochastic";
      if (random_draw) o.experts.init = ExpertInit::kReplicated;
      torch::manual_seed(7);
      MoELayer cpu(o);
      torch::manual_seed(7);
      MoELayer gpu(o);
      gpu->to(kGpu);
      cpu->eval();
      gpu->eval();
      const int64_t T = 512;
      auto x = at::randn({T, 32}, gen);
      auto token_ids = at::randint(0, 100, {T}, gen, at::kLong);
      auto dy = at::randn({T, 32}, gen);
      auto run = [&](MoELayer& layer, at::Device dev) {
        layer->zero_grad();
        auto xi = x.to(dev).detach().requires_grad_(true);
        auto out = layer->forward(xi, token_ids.to(dev));
        ((out.output * dy.to(dev)).sum() + out.stats.total_aux_loss().to(dev)).backward();
        std::vector<at::Tensor> r{out.output.detach().cpu(), xi.grad().cpu()};
        for (const auto& p : layer->named_parameters()) {
          r.push_back(p.value().grad().defined() ? p.value().grad().cpu() : at::zeros_like(p.value()).cpu());
        }
        return r;
      };
      auto ref = run(cpu, at::kCPU);
      auto got = run(gpu, kGpu);
      ASSERT_EQ(got.size(), ref.size());
      for (size_t i = 0; i < (random_draw ? 2 : got.size()); ++i) {
        EXPECT_TRUE(all_close(got[i], ref[i], {1e-4, 1e-3}, /*require_nonzero=*/i < 2)) << "tensor " << i;
      }
    }
  }
}

// SMoE's stratified block (several passes whose sizes the routing decides; the state machine on the
// device): fp32 on the GPU against the CPU, forward, input and parameter gradients, statistics, with
// padding masked out, in evaluation mode (greedy second expert, no dropout) and with capacity drops.
TEST(StratifiedMoEBlock_CUDA, ForwardAndBackwardMatchTheCpu) {
  MOE_REQUIRE_GPU();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  for (const bool masked : {false, true}) {
    SCOPED_TRACE(masked ? "padding masked" : "no padding");
    StratifiedMoEBlockOptions o(32, {4, 2, 2}, 48);
    o.router_options.second_expert_policy = SecondExpertPolicy::kGreedy;
    o.router_options.sample_in_eval = false;
    o.router_options.mask_padding = masked;
    torch::manual_seed(11);
    StratifiedMoEBlock cpu(o);
    torch::manual_seed(11);
    StratifiedMoEBlock gpu(o);
    gpu->to(kGpu);
    cpu->eval();
    gpu->eval();
    const int64_t B = 16, S = 24;
    auto x = at::randn({B, S, 32}, gen);
    auto dy = at::randn({B, S, 32}, gen);
    auto lengths = at::randint(S / 2, S + 1, {B, 1}, gen, at::kLong);
    auto padding = at::arange(S, at::kLong).unsqueeze(0).ge(lengths);
    auto run = [&](StratifiedMoEBlock& block, at::Device dev) {
      block->zero_grad();
      auto xi = x.to(dev).detach().requires_grad_(true);
      auto out = block->forward(xi, at::Tensor(), masked ? padding.to(dev) : at::Tensor());
      ((out.output * dy.to(dev)).sum() + out.stats.total_aux_loss().to(dev)).backward();
      std::vector<at::Tensor> r{out.output.detach().cpu(), xi.grad().cpu(),
                                out.stats.passes_per_token.to(at::kDouble).cpu().reshape({1}),
                                out.stats.experts_per_token_histogram.cpu().to(at::kDouble)};
      for (const auto& p : block->named_parameters())
        r.push_back(p.value().grad().defined() ? p.value().grad().cpu() : at::zeros_like(p.value()).cpu());
      return r;
    };
    auto ref = run(cpu, at::kCPU);
    auto got = run(gpu, kGpu);
    ASSERT_EQ(got.size(), ref.size());
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_TRUE(all_close(got[i], ref[i], {1e-4, 1e-3}, /*require_nonzero=*/i < 2)) << "tensor " << i;
  }
}

#else

TEST(CudaTier_CUDA, NotBuilt) { GTEST_SKIP() << "moe was built without the CUDA tier"; }

#endif

}  // namespace
}  // namespace moe
