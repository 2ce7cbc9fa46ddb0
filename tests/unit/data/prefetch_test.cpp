// The batch prefetcher: the same stream as the TokenBatcher it wraps at every depth, the caller's
// state (not the thread's) for checkpoints, restore mid-stream, and a clean stop with a full queue.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>

#include "errors.h"
#include "synthetic_examples.h"
#include "moe/data/prefetch.h"

namespace moe {
namespace {

using moe::testing::synthetic_examples;

std::unique_ptr<TokenBatcher> make_batcher() {
  BatcherOptions o;
  o.max_tokens = 150;
  o.seed = 9;
  return std::make_unique<TokenBatcher>(std::vector<std::vector<Example>>{synthetic_examples(0, 120, 3), synthetic_examples(1, 80, 4)},
                                        o);
}

// Which examples of which direction, and the padded tensors themselves.
void expect_same(const Batch& a, const Batch& b, int i) {
  EXPECT_TRUE(at::equal(a.index, b.index) && at::equal(a.direction, b.direction)) << i;
  EXPECT_TRUE(at::equal(a.source, b.source) && at::equal(a.target_input, b.target_input) &&
              at::equal(a.target_output, b.target_output) && at::equal(a.source_padding, b.source_padding) &&
              at::equal(a.target_padding, b.target_padding))
      << i;
  EXPECT_EQ(a.num_target_tokens, b.num_target_tokens) << i;
}

bool same_state(const TokenBatcher::State& a, const TokenBatcher::State& b) {
  return a.step == b.step && a.epoch == b.epoch && a.cursor == b.cursor;
}

TEST(PrefetchTest, SameStreamAndCallerStateAtEveryDepth) {
  for (int64_t depth : {0, 1, 4, 64}) {
    auto plain = make_batcher();
    PrefetchOptions o;
    o.depth = depth;
    BatchPrefetcher prefetched(make_batcher(), o);
    EXPECT_TRUE(same_state(prefetched.state(), plain->state()));
    for (int i = 0; i < 60; ++i) {  // crosses epoch boundaries of both directions
      if (i % 7 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));  // let the queue fill
      expect_same(prefetched.next(), plain->next(), i);
      // The caller's position, however far the thread has drawn.
      ASSERT_TRUE(same_state(prefetched.state(), plain->state())) << "depth " << depth << " batch " << i;
    }
  }
}

TEST(PrefetchTest, RestoreDropsThePreparedBatchesAndContinuesExactly) {
  auto plain = make_batcher();
  PrefetchOptions o;
  o.depth = 8;
  BatchPrefetcher p(make_batcher(), o);
  for (int i = 0; i < 25; ++i) plain->next();
  const auto saved = plain->state();
  std::vector<Batch> expected;
  for (int i = 0; i < 30; ++i) expected.push_back(plain->next());
  for (int i = 0; i < 3; ++i) p.next();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a full queue to drop
  p.restore(saved);
  EXPECT_TRUE(same_state(p.state(), saved));
  for (int i = 0; i < 30; ++i) expect_same(p.next(), expected[static_cast<size_t>(i)], i);
  // A checkpoint taken mid-stream from the prefetcher resumes a fresh one exactly.
  const auto mid = p.state();
  std::vector<Batch> rest;
  for (int i = 0; i < 10; ++i) rest.push_back(p.next());
  BatchPrefetcher resumed(make_batcher(), o);
  resumed.restore(mid);
  for (int i = 0; i < 10; ++i) expect_same(resumed.next(), rest[static_cast<size_t>(i)], i);
}

TEST(PrefetchTest, AFailedRestoreIsThrownAgainByNextInsteadOfWaiting) {
  PrefetchOptions o;
  o.depth = 4;
  BatchPrefetcher p(make_batcher(), o);
  p.next();
  TokenBatcher::State bad;
  bad.epoch = {0, 0, 0};  // three directions; the batcher has two
  bad.cursor = {0, 0, 0};
  const auto first = testing::error_of([&] { p.restore(bad); });
  EXPECT_NE(first.find("3 directions"), std::string::npos) << first;
  EXPECT_EQ(testing::error_of([&] { p.next(); }), first);
}

TEST(PrefetchTest, StopsWithAFullQueueAndBoundsItsDepth) {
  for (int round = 0; round < 20; ++round) {
    PrefetchOptions o;
    o.depth = 2;
    BatchPrefetcher p(make_batcher(), o);
    p.next();
    if (round % 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }  // each destructor joins a thread blocked on its full queue (or still drawing)
  PrefetchOptions bad;
  bad.depth = 65;
  EXPECT_EQ(testing::error_of([&] { BatchPrefetcher(make_batcher(), bad); }), "data.prefetch must be in [0, 64], got 65");
  bad.depth = -1;
  EXPECT_EQ(testing::error_of([&] { BatchPrefetcher(make_batcher(), bad); }), "data.prefetch must be in [0, 64], got -1");
}

}  // namespace
}  // namespace moe
