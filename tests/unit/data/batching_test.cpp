// Collation, the token budget, epoch coverage, temperature sampling across directions, determinism
// and exact resume of the TokenBatcher.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "errors.h"
#include "synthetic_examples.h"
#include "moe/data/batching.h"

namespace moe {
namespace {

using moe::testing::synthetic_examples;

TEST(BatchingTest, CollatePadsAndShiftsTargets) {
  Example a{{5, 6, 3}, {8, 3}, 0, 0}, b{{5, 3}, {8, 9, 10, 3}, 1, 4};
  auto batch = collate({&a, &b});
  EXPECT_TRUE(at::equal(batch.source, at::tensor({5, 6, 3, 5, 3, 0}, at::kLong).view({2, 3})));
  EXPECT_TRUE(at::equal(batch.target_output, at::tensor({8, 3, 0, 0, 8, 9, 10, 3}, at::kLong).view({2, 4})));
  EXPECT_TRUE(at::equal(batch.target_input, at::tensor({2, 8, 0, 0, 2, 8, 9, 10}, at::kLong).view({2, 4})));
  EXPECT_TRUE(at::equal(batch.target_padding, batch.target_output.eq(0)));
  EXPECT_EQ(batch.num_target_tokens, 6);
  EXPECT_TRUE(at::equal(batch.index, at::tensor({0, 4}, at::kLong)));
}

TEST(BatchingTest, TokenBudgetAndEpochCoverage) {
  BatcherOptions o;
  o.max_tokens = 200;
  o.bucket_chunk = 64;
  TokenBatcher batcher({synthetic_examples(0, 500, 1)}, o);
  std::multiset<int64_t> seen;
  while (batcher.state().epoch[0] == 0) {
    auto b = batcher.next();
    if (batcher.state().epoch[0] != 0) break;  // this batch opened epoch 1
    EXPECT_LE(b.source.size(0) * std::max(b.source.size(1), b.target_output.size(1)), 200);
    for (int64_t i = 0; i < b.index.size(0); ++i) seen.insert(b.index[i].item<int64_t>());
  }
  EXPECT_EQ(seen.size(), 500u);
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 500u);  // each example exactly once
}

TEST(BatchingTest, TemperatureSampling) {
  auto probs = [](double t) {
    BatcherOptions o;
    o.temperature = t;
    return TokenBatcher({synthetic_examples(0, 100, 1), synthetic_examples(1, 900, 2)}, o).direction_probabilities();
  };
  EXPECT_NEAR(probs(1)[0], 0.1, 1e-12);
  const double a = std::pow(0.1, 0.2), b = std::pow(0.9, 0.2);
  EXPECT_NEAR(probs(5)[0], a / (a + b), 1e-12);
  EXPECT_NEAR(probs(1e6)[0], 0.5, 1e-5);
  BatcherOptions o;
  o.temperature = 5;
  TokenBatcher batcher({synthetic_examples(0, 100, 1), synthetic_examples(1, 900, 2)}, o);
  int first = 0;
  for (int i = 0; i < 4000; ++i) first += batcher.next().direction[0].item<int64_t>() == 0;
  EXPECT_NEAR(first / 4000.0, a / (a + b), 0.03);
  o.temperature = 0;
  EXPECT_EQ(testing::error_of([&] { TokenBatcher bad({synthetic_examples(0, 5, 1)}, o); }),
            "BatcherOptions.temperature must be > 0, got 0");
}

TEST(BatchingTest, DeterministicAndResumesExactly) {
  auto make = [] {
    BatcherOptions o;
    o.max_tokens = 150;
    o.seed = 9;
    return TokenBatcher({synthetic_examples(0, 120, 3), synthetic_examples(1, 80, 4)}, o);
  };
  auto a = make(), b = make();
  // Which examples (index) of which direction, not only their shapes: the synthetic tokens repeat.
  auto identity = [](const Batch& batch) { return at::stack({batch.index, batch.direction}); };
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(at::equal(identity(a.next()), identity(b.next()))) << i;
  const auto saved = a.state();
  std::vector<at::Tensor> expected;
  for (int i = 0; i < 40; ++i) expected.push_back(identity(a.next()));  // crosses epoch boundaries
  auto resumed = make();
  resumed.restore(saved);
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(at::equal(identity(resumed.next()), expected[i])) << i;
  auto other = make();
  other.restore(saved);
  other.next();  // one step ahead: a different stream
  bool differs = false;
  for (int i = 0; i < 10; ++i) differs |= !at::equal(identity(other.next()), expected[i]);
  EXPECT_TRUE(differs);
}

TEST(BatchingTest, EvalBatchesKeepOrder) {
  auto examples = synthetic_examples(0, 50, 5);
  auto batches = make_eval_batches(examples, 100);
  int64_t next = 0;
  for (const auto& b : batches) {
    for (int64_t i = 0; i < b.index.size(0); ++i) EXPECT_EQ(b.index[i].item<int64_t>(), next++);
  }
  EXPECT_EQ(next, 50);
}

}  // namespace
}  // namespace moe
