// dispatch and combine against the dense one-hot formulation in float64, gradients by finite
// differences, bf16 accumulation, non-contiguous input, determinism.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dense_reference.h"
#include "gradcheck.h"
#include "moe/core/error.h"
#include "moe/ops/dispatch_combine.h"
#include "tolerances.h"

namespace moe {
namespace {

struct Case {
  const char* name;
  int64_t T, E, K, capacity;
  bool all_to_one;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

class DispatchCombineTest : public ::testing::TestWithParam<Case> {};

at::Tensor routing_for(const Case& c, at::Generator& gen) {
  if (c.all_to_one) {
    // every token picks expert 0 first, then distinct others
    auto rest = at::rand({c.T, c.E - 1}, gen).argsort(/*dim=*/1, /*descending=*/false).add(1);
    return at::cat({at::zeros({c.T, 1}, at::kLong), rest}, 1).narrow(1, 0, c.K).contiguous();
  }
  return at::rand({c.T, c.E}, gen).argsort(/*dim=*/1, /*descending=*/false).narrow(1, 0, c.K).contiguous();
}

TEST_P(DispatchCombineTest, MatchesOneHotFormulationInFloat64) {
  const Case c = GetParam();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const int64_t d = 5;
  auto idx = routing_for(c, gen);
  auto x = at::randn({c.T, d}, gen, at::kDouble);
  auto w = at::rand({c.T, c.K}, gen, at::kDouble);
  auto layout = build_layout(idx, c.E, c.capacity);
  auto ref = testing::one_hot_routing(idx, w, c.E, c.capacity, WeightNormalization::kNone);

  // dispatch: packed rows of expert e equal the one-hot buffer's first tokens_per_expert[e] rows.
  auto packed = dispatch(x, layout);
  auto dense = at::einsum("tec,td->ecd", {ref.dispatch_mask, x});
  for (int64_t e = 0; e < c.E; ++e) {
    const int64_t n = layout.tokens_per_expert[e].item<int64_t>();
    const int64_t off = layout.expert_offsets[e].item<int64_t>();
    ASSERT_TRUE(testing::all_close(packed.narrow(0, off, n), dense[e].narrow(0, 0, n),
                                   testing::tolerance_for(at::kDouble), false))
        << "expert " << e;
  }
  // combine of an arbitrary per-expert function against the one-hot combine.
  auto f = [](int64_t e, const at::Tensor& rows) { return at::tanh(rows * (e + 1)) + 0.1 * e; };
  std::vector<at::Tensor> outs;
  for (int64_t e = 0; e < c.E; ++e) {
    auto rows = packed.narrow(0, layout.expert_offsets[e].item<int64_t>(), layout.tokens_per_expert[e].item<int64_t>());
    outs.push_back(f(e, rows));
  }
  auto packed_out = at::cat(outs, 0);
  auto y = combine(packed_out, layout, w);
  // The one-hot formulation runs f on padding rows too; zero rows map to f(0) but carry weight 0.
  auto y_ref = testing::one_hot_moe(x, ref, f);
  EXPECT_TRUE(testing::all_close(y, y_ref, testing::tolerance_for(at::kDouble), c.T > 0 && layout.num_rows() > 0));
}

TEST_P(DispatchCombineTest, GradientsByFiniteDifferences) {
  const Case c = GetParam();
  if (c.T > 12) GTEST_SKIP() << "finite differences on the small cases only";
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  auto idx = routing_for(c, gen);
  auto layout = build_layout(idx, c.E, c.capacity);
  auto x = at::randn({c.T, 3}, gen, at::kDouble).requires_grad_();
  auto w = at::rand({c.T, c.K}, gen, at::kDouble).requires_grad_();
  auto scale = at::randn({layout.num_rows(), 3}, gen, at::kDouble);
  // y = combine(dispatch(x) ⊙ scale + dispatch(x)², w): exercises both backward passes and the
  // weight gradient.
  auto f = [&] {
    auto p = dispatch(x, layout);
    return combine(p * scale + p * p, layout, w);
  };
  EXPECT_TRUE(testing::gradcheck(f, {x, w}));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DispatchCombineTest,
    ::testing::Values(Case{"top1", 9, 4, 1, -1, false}, Case{"top2", 10, 4, 2, -1, false},
                      Case{"k_equals_E", 7, 3, 3, -1, false}, Case{"capacity_overflow", 12, 3, 2, 3, false},
                      Case{"expert_with_zero_tokens", 6, 8, 1, -1, false},
                      Case{"all_to_one_expert", 8, 4, 2, 5, true}, Case{"zero_tokens", 0, 4, 2, 0, false},
                      Case{"all_dropped", 6, 3, 2, 0, false},
                      Case{"large", 300, 16, 4, 60, false}),
    [](const auto& test_info) { return std::string(test_info.param.name); });

TEST(DispatchCombineDtypeTest, Bf16AccumulatesInFloat32) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  const int64_t T = 64, E = 4, K = 4, d = 16;
  auto idx = at::rand({T, E}, gen).argsort(/*dim=*/1, /*descending=*/false).narrow(1, 0, K).contiguous();
  auto layout = build_layout(idx, E, -1);
  auto x = at::randn({T, d}, gen);
  auto w = at::rand({T, K}, gen);
  auto y = combine(dispatch(x.to(at::kBFloat16), layout), layout, w);
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  // float64 reference from the same bf16-rounded inputs: only the final rounding differs.
  auto y_ref = combine(dispatch(x.to(at::kBFloat16).to(at::kDouble), layout), layout, w.to(at::kDouble));
  EXPECT_TRUE(testing::all_close(y, y_ref, testing::tolerance_for(at::kBFloat16)));
  // Cancellation: 256 + 1 - 256 is 1 in fp32 but 0 if accumulated in bf16 (256 + 1 rounds to 256).
  auto three = build_layout(at::tensor({0, 1, 2}, at::kLong).view({1, 3}), 3, -1);
  auto rows = at::tensor({256.0f, 1.0f, -256.0f}).view({3, 1}).to(at::kBFloat16);
  EXPECT_EQ(combine(rows, three, at::ones({1, 3})).item<float>(), 1.0f);
  EXPECT_EQ(dispatch(rows.narrow(0, 0, 1), build_layout(at::zeros({1, 1}, at::kLong), 1, -1)).item<float>(), 256.0f);
}

TEST(DispatchCombineDtypeTest, NonContiguousInputAndDeterminism) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const int64_t T = 50, E = 5, K = 2;
  auto idx = at::rand({T, E}, gen).argsort(/*dim=*/1, /*descending=*/false).narrow(1, 0, K).contiguous();
  auto layout = build_layout(idx, E, 15);
  auto base = at::randn({8, T}, gen, at::kDouble);
  auto x = base.t();  // [T, 8], non-contiguous
  ASSERT_FALSE(x.is_contiguous());
  auto w = at::rand({T, K}, gen, at::kDouble);
  auto y1 = combine(dispatch(x, layout), layout, w);
  auto y2 = combine(dispatch(x.contiguous(), layout), layout, w);
  EXPECT_TRUE(testing::bitwise_equal(y1, y2));
  auto xg = x.detach().clone().requires_grad_();
  combine(dispatch(xg, layout), layout, w).pow(2).sum().backward();
  auto g1 = xg.grad().clone();
  xg.mutable_grad().zero_();
  combine(dispatch(xg, layout), layout, w).pow(2).sum().backward();
  EXPECT_TRUE(testing::bitwise_equal(g1, xg.grad()));
}

TEST(DispatchCombineDtypeTest, VariableKPaddingMatchesReferenceWithGradients) {
  // Every token has empty (-1) slots in different places, as variable-k routers produce, plus a
  // capacity drop: combine compacts the kept slots before its gather-sum.
  auto idx = at::tensor({0, -1, 2, -1, 1, -1, -1, -1, 3, 2, -1, 0, -1, 3, -1, 1, 2, -1, 0, -1}, at::kLong).view({5, 4});
  auto layout = build_layout(idx, 4, 2);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(8);
  auto x = at::randn({5, 3}, gen, at::kDouble).requires_grad_();
  auto w = at::rand({5, 4}, gen, at::kDouble).requires_grad_();
  auto ref = testing::one_hot_routing(idx, w.detach(), 4, 2, WeightNormalization::kNone);
  auto f = [](int64_t e, const at::Tensor& rows) { return rows * (e + 2.0); };
  std::vector<at::Tensor> outs;
  auto packed = dispatch(x, layout);
  for (int64_t e = 0; e < 4; ++e) {
    outs.push_back(f(e, packed.narrow(0, layout.expert_offsets[e].item<int64_t>(), layout.tokens_per_expert[e].item<int64_t>())));
  }
  EXPECT_TRUE(testing::all_close(combine(at::cat(outs, 0), layout, w), testing::one_hot_moe(x.detach(), ref, f),
                                 testing::tolerance_for(at::kDouble)));
  auto scale = at::randn({layout.num_rows(), 3}, gen, at::kDouble);
  EXPECT_TRUE(testing::gradcheck([&] { return combine(dispatch(x, layout) * scale, layout, w); }, {x, w}));
}

TEST(DispatchCombineDtypeTest, RejectsMismatchedShapes) {
  auto layout = build_layout(at::zeros({3, 1}, at::kLong), 2, -1);
  EXPECT_THROW(dispatch(at::zeros({4, 2}), layout), Error);
  EXPECT_THROW(combine(at::zeros({3, 2}), layout, at::zeros({3, 2})), Error);
  try {
    dispatch(at::zeros({4, 2}), layout);
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "dispatch: x has 4 rows but the layout has 3 tokens");
  }
}

}  // namespace
}  // namespace moe
