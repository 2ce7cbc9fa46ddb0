// DispatchLayout: hand-computed small cases, priority order, and agreement with the one-hot cumsum
// formulation on random inputs.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "dense_reference.h"
#include "moe/core/error.h"
#include "moe/ops/layout.h"

namespace moe {
namespace {

at::Tensor longs(std::vector<int64_t> v, std::vector<int64_t> shape) {
  return at::tensor(v, at::kLong).view(shape);
}

TEST(LayoutTest, RankMajorFirstComeFirstServedWithDrops) {
  // Tokens: t0 -> (e0, e1), t1 -> (e0, e2), t2 -> (e1, e0); capacity 2.
  // Slot-0 pass: e0 <- t0, t1; e1 <- t2. Slot-1 pass: e1 <- t0; e2 <- t1; e0 full -> t2's slot 1 dropped.
  auto layout = build_layout(longs({0, 1, 0, 2, 1, 0}, {3, 2}), 3, 2);
  EXPECT_TRUE(at::equal(layout.tokens_per_expert, longs({2, 2, 1}, {3})));
  EXPECT_TRUE(at::equal(layout.requested_per_expert, longs({3, 2, 1}, {3})));
  EXPECT_TRUE(at::equal(layout.expert_offsets, longs({0, 2, 4, 5}, {4})));
  EXPECT_TRUE(at::equal(layout.row_token, longs({0, 1, 2, 0, 1}, {5})));
  EXPECT_TRUE(at::equal(layout.row_slot, longs({0, 0, 0, 1, 1}, {5})));
  EXPECT_TRUE(at::equal(layout.slot_row, longs({0, 3, 1, 4, 2, -1}, {3, 2})));
  EXPECT_EQ(layout.num_dropped.item<int64_t>(), 1);
  EXPECT_EQ(layout.num_rows(), 5);
}

TEST(LayoutTest, PriorityDecidesWhoKeepsTheSlot) {
  // Four tokens all to expert 0 with capacity 2; priority prefers tokens 3 and 1.
  auto idx = longs({0, 0, 0, 0}, {4, 1});
  auto priority = at::tensor({3.0, 1.0, 2.0, 0.0}).view({4, 1});
  auto layout = build_layout(idx, 1, 2, priority);
  EXPECT_TRUE(at::equal(layout.row_token, longs({3, 1}, {2})));
  EXPECT_TRUE(at::equal(layout.slot_row, longs({-1, 1, -1, 0}, {4, 1})));
  // Equal priorities fall back to rank-major first-come-first-served.
  auto tied = build_layout(idx, 1, 2, at::zeros({4, 1}));
  EXPECT_TRUE(at::equal(tied.row_token, longs({0, 1}, {2})));
}

TEST(LayoutTest, RankThenProbabilityPriority) {
  // XMoE-style key: rank first, then higher probability. Expert 0 (capacity 2) is wanted by
  // t0 (rank 1, p .30), t1 (rank 0, p .40), t2 (rank 0, p .90), t3 (rank 1, p .35).
  auto idx = longs({1, 0, 0, 1, 0, 1, 2, 0}, {4, 2});
  auto prob = at::tensor({0.6, 0.30, 0.40, 0.2, 0.90, 0.05, 0.5, 0.35}, at::kDouble).view({4, 2});
  auto rank = at::arange(2, at::kDouble).view({1, 2}).expand({4, 2});
  auto layout = build_layout(idx, 3, 2, rank * 2 + (1 - prob));
  // Expert 0 keeps t2 (rank 0, .90) then t1 (rank 0, .40); t0 and t3 (rank 1) are dropped.
  auto first = layout.expert_offsets[0].item<int64_t>();
  EXPECT_EQ(layout.row_token[first].item<int64_t>(), 2);
  EXPECT_EQ(layout.row_token[first + 1].item<int64_t>(), 1);
  EXPECT_EQ(layout.slot_row[0][1].item<int64_t>(), -1);
  EXPECT_EQ(layout.slot_row[3][1].item<int64_t>(), -1);
  // Expert 1 (capacity 2): t0 at rank 0, then t1 (rank 1, .20) before t2 (rank 1, .05).
  EXPECT_EQ(layout.slot_row[1][1].item<int64_t>(), layout.expert_offsets[1].item<int64_t>() + 1);
  EXPECT_EQ(layout.slot_row[2][1].item<int64_t>(), -1);
  EXPECT_EQ(layout.num_dropped.item<int64_t>(), 3);
}

TEST(LayoutTest, PaddingZeroTokensAndUnlimitedCapacity) {
  auto layout = build_layout(longs({2, -1, -1, -1}, {2, 2}), 3, -1);
  EXPECT_TRUE(at::equal(layout.tokens_per_expert, longs({0, 0, 1}, {3})));
  EXPECT_TRUE(at::equal(layout.slot_row, longs({0, -1, -1, -1}, {2, 2})));
  auto empty = build_layout(at::empty({0, 2}, at::kLong), 4, 3);
  EXPECT_EQ(empty.num_rows(), 0);
  EXPECT_TRUE(at::equal(empty.expert_offsets, at::zeros({5}, at::kLong)));
  auto zero_capacity = build_layout(longs({0, 1}, {2, 1}), 2, 0);
  EXPECT_EQ(zero_capacity.num_rows(), 0);
  EXPECT_EQ(zero_capacity.num_dropped.item<int64_t>(), 2);
}

TEST(LayoutTest, MatchesOneHotCumsumFormulationOnRandomInputs) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t T = 1 + trial * 7, E = 1 + trial % 6, K = 1 + trial % std::min<int64_t>(E, 3);
    const int64_t C = trial % 3 == 0 ? -1 : 1 + trial % 5;
    // K distinct experts per token from a random permutation.
    auto idx = at::rand({T, E}, gen).argsort(/*dim=*/1, /*descending=*/false).narrow(1, 0, K).contiguous();
    auto layout = build_layout(idx, E, C);
    auto ref = testing::one_hot_routing(idx, at::ones({T, K}, at::kDouble), E, C, WeightNormalization::kNone);
    // Row r of expert e sits at capacity slot r - offset[e] in the one-hot formulation.
    for (int64_t r = 0; r < layout.num_rows(); ++r) {
      const int64_t t = layout.row_token[r].item<int64_t>(), k = layout.row_slot[r].item<int64_t>();
      const int64_t e = idx[t][k].item<int64_t>();
      const int64_t c = r - layout.expert_offsets[e].item<int64_t>();
      ASSERT_EQ(ref.dispatch_mask[t][e][c].item<double>(), 1.0) << "trial " << trial << " row " << r;
      ASSERT_EQ(layout.slot_row[t][k].item<int64_t>(), r);
    }
    ASSERT_EQ(layout.num_rows(), static_cast<int64_t>(ref.dispatch_mask.sum().item<double>())) << "trial " << trial;
  }
}

TEST(LayoutTest, Deterministic) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto idx = at::rand({500, 8}, gen).argsort(/*dim=*/1, /*descending=*/false).narrow(1, 0, 2).contiguous();
  auto prio = at::rand({500, 2}, gen);
  auto a = build_layout(idx, 8, 90, prio);
  auto b = build_layout(idx, 8, 90, prio);
  EXPECT_TRUE(at::equal(a.row_token, b.row_token));
  EXPECT_TRUE(at::equal(a.slot_row, b.slot_row));
}

TEST(LayoutTest, RejectsBadInput) {
  auto message = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message([] { build_layout(longs({0, 3}, {1, 2}), 3, 1); }),
            "build_layout: expert_index[0, 1] = 3 is outside [-1, 3)");
  EXPECT_EQ(message([] { build_layout(longs({1, 1}, {1, 2}), 3, 1); }), "build_layout: token 0 names expert 1 twice");
  EXPECT_EQ(message([] { build_layout(longs({0}, {1}), 3, 1); }),
            "build_layout: expert_index must be [T, K], got shape [1]");
  EXPECT_EQ(message([] { build_layout(longs({0}, {1, 1}), 0, 1); }),
            "build_layout: num_experts must be >= 1, got 0");
  EXPECT_EQ(message([] { build_layout(longs({0}, {1, 1}), 1, -2); }),
            "build_layout: capacity must be >= 0 or -1 (unlimited), got -2");
  EXPECT_EQ(message([] { build_layout(at::zeros({1, 1}, at::kInt), 1, 1); }),
            "build_layout: expert_index must be int64, got Int");
}

}  // namespace
}  // namespace moe
