// The router epilogue and grouped GEMM ops on the CPU (their CUDA paths are checked against these in
// tests/cuda): softmax + top-k against a sort, the threshold rule against hand-computed selections,
// grouped_linear (both backends) against a per-group float64 formulation with gradients, and the
// errors for bad arguments and for tensors on a device this build cannot use.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "errors.h"
#include "moe/core/build_config.h"
#include "moe/ops/dispatch_combine.h"
#include "moe/ops/grouped_gemm.h"
#include "moe/ops/layout.h"
#include "moe/ops/router_epilogue.h"
#include "tolerances.h"

namespace moe {
namespace {

using testing::all_close;

TEST(RouterEpilogueTest, SoftmaxTopKIsTheDescendingOrderOfTheLogits) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  auto logits = at::randn({300, 16}, gen, at::kDouble).requires_grad_(true);
  auto s = softmax_topk(logits, 5);
  auto expected = std::get<1>(logits.detach().sort(/*stable=*/true, 1, /*descending=*/true)).narrow(1, 0, 5);
  EXPECT_TRUE(at::equal(s.index, expected));
  EXPECT_TRUE(all_close(s.probs, at::softmax(logits.detach(), 1), {1e-15, 1e-12}));
  EXPECT_FALSE(router_epilogue_fused(logits));  // fp64 on the CPU
  // probs carries the softmax gradient: d/dl Σ p·g = p ⊙ (g − Σ p·g).
  auto g = at::randn({300, 16}, gen, at::kDouble);
  (s.probs * g).sum().backward();
  auto p = s.probs.detach();
  EXPECT_TRUE(all_close(logits.grad(), p * (g - (p * g).sum(1, true)), {1e-14, 1e-12}));
  // Ties go to the lower expert id.
  EXPECT_TRUE(at::equal(softmax_topk(at::zeros({2, 6}), 3).index, at::arange(3, at::kLong).expand({2, 3})));
  // Masked experts (-inf): k distinct experts still, the finite one first, then the lowest ids.
  auto masked = at::full({1, 6}, -std::numeric_limits<float>::infinity());
  masked[0][4] = 0.f;
  EXPECT_TRUE(at::equal(softmax_topk(masked, 3).index[0], at::tensor(std::vector<int64_t>{4, 0, 1}, at::kLong)));
}

TEST(RouterEpilogueTest, ThresholdKeepsExpertsWhileTheMassBeforeIsBelowIt) {
  // probs: token 0 = [0.5, 0.3, 0.2], token 1 = [0.1, 0.1, 0.8] (as log-probabilities).
  auto probs = at::tensor(std::vector<double>{0.5, 0.3, 0.2, 0.1, 0.1, 0.8}, at::kDouble).view({2, 3});
  auto s = softmax_threshold(probs.log(), 0.75);
  // token 0: mass before = 0, 0.5, 0.8 -> experts 0, 1; token 1: 0, 0.8 -> expert 2 only.
  EXPECT_TRUE(at::equal(s.index, at::tensor(std::vector<int64_t>{0, 1, 2, -1}, at::kLong).view({2, 2})));
  auto [index, weight] = threshold_select(probs, 1.0);  // every expert whose mass before is < 1
  EXPECT_EQ(index.size(1), 3);
  EXPECT_TRUE(all_close(weight.sum(1), at::ones({2}, at::kDouble), {1e-12, 0}));
}

TEST(RouterEpilogueTest, BadArgumentsNameTheProblem) {
  EXPECT_EQ(testing::error_of([] { softmax_topk(at::zeros({4, 3}), 4); }), "softmax_topk: k must be in [1, 3], got 4");
  EXPECT_EQ(testing::error_of([] { softmax_topk(at::zeros({4}), 1); }), "softmax_topk: logits must be [T, E], got [4]");
  EXPECT_EQ(testing::error_of([] { softmax_threshold(at::zeros({4, 3}), 0.0); }),
            "softmax_threshold: threshold must be in (0, 1], got 0");
}

// The reference: each group through its own matrix in float64, concatenated.
at::Tensor per_group_reference(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                               const std::vector<int64_t>& rows) {
  std::vector<at::Tensor> outs;
  int64_t at_row = 0;
  for (size_t g = 0; g < rows.size(); ++g) {
    const auto i = static_cast<int64_t>(g);
    outs.push_back(at::matmul(x.narrow(0, at_row, rows[g]), w[i]) + b[i]);
    at_row += rows[g];
  }
  return at::cat(outs, 0);
}

TEST(GroupedLinearTest, BothBackendsMatchAPerGroupFormulationWithGradients) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const std::vector<int64_t> rows{7, 0, 12, 1, 0, 9};
  const int64_t N = 29, G = 6, in = 8, out = 16;
  auto x = at::randn({N, in}, gen, at::kDouble);
  auto w = at::randn({G, in, out}, gen, at::kDouble);
  auto b = at::randn({G, out}, gen, at::kDouble);
  auto dy = at::randn({N, out}, gen, at::kDouble);
  auto grads = [&](auto&& fn, c10::ScalarType dtype) {
    auto leaf = [&](const at::Tensor& t) { return t.to(dtype, false, /*copy=*/true).requires_grad_(true); };
    auto xi = leaf(x), wi = leaf(w), bi = leaf(b);
    auto y = fn(xi, wi, bi);
    y.backward(dy.to(dtype));
    return std::vector<at::Tensor>{y.detach(), xi.grad(), wi.grad(), bi.grad()};
  };
  auto ref = grads([&](auto& xi, auto& wi, auto& bi) { return per_group_reference(xi, wi, bi, rows); }, at::kDouble);
  EXPECT_EQ(ref[2][1].abs().max().item<double>(), 0.0);
  for (auto backend : {GroupedGemmBackend::kPerGroup, GroupedGemmBackend::kGroupedMM}) {
    for (auto dtype : {at::kDouble, at::kFloat}) {
      // LibTorch's grouped_mm takes fp32/bf16/fp16 only (an fp64 call would fall back per group).
      if (backend == GroupedGemmBackend::kGroupedMM && dtype == at::kDouble) continue;
      SCOPED_TRACE(to_string(backend) + " " + c10::toString(dtype));
      const int64_t fallbacks = grouped_gemm_fallbacks();
      auto got = grads([&](auto& xi, auto& wi, auto& bi) { return grouped_linear(xi, wi, bi, rows, backend); }, dtype);
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_TRUE(all_close(got[i], ref[i], testing::tolerance_for(dtype))) << "tensor " << i;
      }
      EXPECT_EQ(grouped_gemm_fallbacks(), fallbacks);
    }
  }
  // Without a bias (Mixtral's experts), both backends.
  for (auto backend : {GroupedGemmBackend::kPerGroup, GroupedGemmBackend::kGroupedMM}) {
    auto xi = x.to(at::kFloat, false, true).requires_grad_(true);
    auto y = grouped_linear(xi, w.to(at::kFloat), at::Tensor(), rows, backend);
    y.backward(dy.to(at::kFloat));
    auto expected = per_group_reference(x, w, at::zeros_like(b), rows);
    EXPECT_TRUE(all_close(y, expected, testing::tolerance_for(at::kFloat))) << to_string(backend);
    EXPECT_TRUE(all_close(xi.grad(), ref[1], testing::tolerance_for(at::kFloat))) << to_string(backend);
  }
  EXPECT_EQ(resolve_grouped_gemm_backend(x, w), GroupedGemmBackend::kPerGroup);  // the CPU
  EXPECT_EQ(parse_grouped_gemm_backend("grouped_mm"), GroupedGemmBackend::kGroupedMM);
}

TEST(GroupedLinearTest, BadArgumentsNameTheField) {
  auto x = at::zeros({5, 4});
  auto w = at::zeros({2, 4, 3});
  EXPECT_EQ(testing::error_of([&] { grouped_linear(x, w, at::Tensor(), {2, 2}); }),
            "grouped_linear: group_rows sums to 4 but x has 5 rows");
  EXPECT_EQ(testing::error_of([&] { grouped_linear(x, w, at::Tensor(), {5}); }),
            "grouped_linear: group_rows has 1 entries but weight has 2 groups");
  EXPECT_EQ(testing::error_of([&] { grouped_linear(x, at::zeros({2, 3, 3}), at::Tensor(), {2, 3}); }),
            "grouped_linear: weight must be [G, 4, out], got [2, 3, 3]");
  EXPECT_EQ(testing::error_of([&] { grouped_linear(x, w, at::zeros({2, 4}), {2, 3}); }),
            "grouped_linear: bias must be [2, 3], got [2, 4]");
  EXPECT_EQ(testing::error_of([] { parse_grouped_gemm_backend("cutlass"); }),
            "grouped GEMM backend must be one of auto, grouped_mm, per_group; got 'cutlass'");
}

// A tensor on a device this build does not run: a meta tensor everywhere, and a CUDA tensor (made
// without allocating) where moe was built without the CUDA tier.
TEST(OpsDeviceTest, MetaTensorsAreRejectedByName) {
  auto meta = at::empty({4, 2}, at::TensorOptions().dtype(at::kLong).device(at::kMeta));
  EXPECT_EQ(testing::error_of([&] { build_layout(meta, 4, -1); }),
            "build_layout: expert_index must be a CPU or CUDA tensor, got meta");
  EXPECT_EQ(testing::error_of([&] { softmax_topk(meta.to(at::kFloat), 1); }),
            "softmax_topk: logits must be a CPU or CUDA tensor, got meta");
}

TEST(OpsDeviceTest, CudaTensorsWithoutTheCudaTierAreRejectedByName) {
#if MOE_WITH_CUDA
  GTEST_SKIP() << "moe was built with the CUDA tier";
#else
  int64_t storage[8] = {0, 1, 1, 2, 2, 3, 3, 0};
  at::Tensor fake_cuda;
  try {
    fake_cuda = at::from_blob(storage, {4, 2}, [](void*) {}, at::TensorOptions().dtype(at::kLong).device(at::kCUDA));
  } catch (const c10::Error&) {
    GTEST_SKIP() << "this LibTorch cannot describe a CUDA tensor without CUDA";
  }
  EXPECT_EQ(testing::error_of([&] { build_layout(fake_cuda, 4, -1); }),
            "build_layout: moe was built without CUDA support; expert_index is on cuda:0");
  auto layout = build_layout(at::tensor(std::vector<int64_t>{0, 1}, at::kLong).view({2, 1}), 2, -1);
  auto x = at::from_blob(storage, {2, 2}, [](void*) {}, at::TensorOptions().dtype(at::kDouble).device(at::kCUDA));
  EXPECT_EQ(testing::error_of([&] { dispatch(x, layout); }),
            "dispatch: moe was built without CUDA support; x is on cuda:0");
#endif
}

}  // namespace
}  // namespace moe
