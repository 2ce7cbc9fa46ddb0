// The variant routers: XMoE threshold, THOR stochastic, expert choice and hash. Crafted cases,
// float64 comparisons, gradients by finite differences, and the checks every router must pass
// (determinism under a seed, no NaN with equal or huge logits or a single token, clear errors).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "dense_reference.h"
#include "errors.h"
#include "gradcheck.h"
#include "moe/core/error.h"
#include "moe/layers/moe_layer.h"
#include "moe/ops/layout.h"
#include "moe/routing/expert_choice_router.h"
#include "moe/routing/hash_router.h"
#include "moe/routing/stochastic_router.h"
#include "moe/routing/threshold_router.h"
#include "tolerances.h"

namespace moe {
namespace {

RouterOptions options(int64_t d, int64_t E, int64_t k = 1) {
  RouterOptions o;
  o.d_model = d;
  o.num_experts = E;
  o.top_k = k;
  return o;
}

using testing::error_of;

// ---- XMoE threshold ------------------------------------------------------------------------------

TEST(ThresholdRouterTest, CountsOnCraftedProbabilities) {
  // Dyadic probabilities so that every cumulative sum is exact.
  auto p = at::tensor({0.5, 0.25, 0.125, 0.125, 0.125, 0.125, 0.25, 0.5}, at::kDouble).view({2, 4});
  auto count = [&](double t) { return threshold_select(p, t).first.ge(0).sum(1); };
  // before-sums per rank: 0, .5, .75, .875 -> kept while < t (strict), rank 0 always
  EXPECT_TRUE(at::equal(count(0.5), at::tensor({1, 1}, at::kLong)));
  EXPECT_TRUE(at::equal(count(0.75), at::tensor({2, 2}, at::kLong)));
  EXPECT_TRUE(at::equal(count(0.8), at::tensor({3, 3}, at::kLong)));
  EXPECT_TRUE(at::equal(count(1.0), at::tensor({4, 4}, at::kLong)));
  auto [index, weight] = threshold_select(p, 0.75);
  EXPECT_TRUE(at::equal(index, at::tensor({0, 1, 3, 2}, at::kLong).view({2, 2})));
  EXPECT_TRUE(at::equal(weight, at::tensor({0.5, 0.25, 0.5, 0.25}, at::kDouble).view({2, 2})));
  // Variable k: padding with -1 up to the longest selection.
  auto mixed = at::tensor({0.5, 0.25, 0.125, 0.125, 0.875, 0.0625, 0.03125, 0.03125}, at::kDouble).view({2, 4});
  auto [mixed_index, mixed_weight] = threshold_select(mixed, 0.8);
  EXPECT_TRUE(at::equal(mixed_index, at::tensor({0, 1, 2, 0, -1, -1}, at::kLong).view({2, 3})));
  EXPECT_EQ(mixed_weight[1][1].item<double>(), 0.0);
}

TEST(ThresholdRouterTest, ThresholdLimitsAndRawWeights) {
  torch::manual_seed(0);
  auto o = options(8, 6);
  o.threshold = 1e-6;
  ThresholdRouter router(o);
  auto x = at::randn({50, 8});
  auto plan = router->route(x);
  EXPECT_EQ(plan.expert_index.size(1), 1);  // t -> 0: exactly one expert per token
  auto probs = at::softmax(at::matmul(x, router->weight.t()), 1);
  EXPECT_TRUE(at::equal(plan.expert_index.select(1, 0), probs.argmax(1)));
  router->set_threshold(1.0);  // dense: every expert
  auto dense = router->route(x);
  EXPECT_EQ(dense.expert_index.size(1), 6);
  EXPECT_TRUE(dense.expert_index.ge(0).all().item<bool>());
  // Raw probabilities, not renormalised; balance from the top-1 choice only.
  EXPECT_EQ(dense.normalization, WeightNormalization::kNone);
  EXPECT_TRUE(testing::all_close(dense.weight.sum(1), at::ones({50}), testing::tolerance_for(at::kFloat)));
  EXPECT_NEAR(dense.aux_losses.at("balance").value.item<double>(),
              6 * (probs.mean(0) * at::one_hot(probs.argmax(1), 6).to(at::kFloat).mean(0)).sum().item<double>(), 1e-5);
  EXPECT_EQ(error_of([&] { router->set_threshold(0); }), "ThresholdRouter.threshold must be in (0, 1], got 0");
  o.threshold = 1.5;
  EXPECT_EQ(error_of([&] { ThresholdRouter bad(o); }), "RouterOptions.threshold must be in (0, 1], got 1.5");
}

TEST(ThresholdRouterTest, RankThenProbabilityCapacity) {
  // Two experts, capacity 1. Expert 0 is rank 0 for t0 (p .6) and t1 (p .9), rank 1 for t2 (p .3):
  // it keeps t1. Expert 1 is rank 0 for t2 (p .7) and keeps it.
  auto o = options(2, 2);
  o.threshold = 1.0;
  o.capacity.formula = CapacityFormula::kDeepSpeed;
  o.capacity.capacity_factor = 0.01;
  o.capacity.min_capacity = 1;
  ThresholdRouter router(o);
  {
    torch::NoGradGuard g;
    router->weight.copy_(at::eye(2));
  }
  auto x = at::log(at::tensor({0.6, 0.4, 0.9, 0.1, 0.3, 0.7}).view({3, 2}));
  auto plan = router->route(x);
  EXPECT_EQ(plan.capacity, 1);
  auto layout = build_layout(plan.expert_index, 2, plan.capacity, plan.priority);
  EXPECT_EQ(layout.slot_row[1][0].item<int64_t>(), 0);   // t1 keeps expert 0
  EXPECT_EQ(layout.slot_row[0][0].item<int64_t>(), -1);  // t0 (lower probability) dropped
  EXPECT_EQ(layout.slot_row[2][0].item<int64_t>(), 1);   // t2 keeps expert 1
  EXPECT_EQ(layout.num_dropped.item<int64_t>(), 4);      // 6 assignments (t = 1: both experts), 2 slots

  // Three experts: t0's rank-1 probability for expert 0 (.45) beats t1's rank-0 probability (.40),
  // but rank comes first, so expert 0 keeps t1.
  auto o3 = o;
  o3.num_experts = 3;
  o3.d_model = 3;
  ThresholdRouter three(o3);
  {
    torch::NoGradGuard g;
    three->weight.copy_(at::eye(3));
  }
  auto x3 = at::log(at::tensor({0.45, 0.5, 0.05, 0.40, 0.35, 0.25}).view({2, 3}));
  auto plan3 = three->route(x3);
  auto layout3 = build_layout(plan3.expert_index, 3, 1, plan3.priority);
  EXPECT_EQ(plan3.expert_index[1][0].item<int64_t>(), 0);  // t1's rank 0 is expert 0
  EXPECT_EQ(plan3.expert_index[0][1].item<int64_t>(), 0);  // t0's rank 1 is expert 0
  EXPECT_GE(layout3.slot_row[1][0].item<int64_t>(), 0);    // kept
  EXPECT_EQ(layout3.slot_row[0][1].item<int64_t>(), -1);   // dropped despite the higher probability
}

TEST(ThresholdRouterTest, DenseToSparseScheduleAndStatistics) {
  torch::manual_seed(4);
  MoELayerOptions o(8, 8, 4, 1);
  o.router = "threshold";
  o.router_options.threshold = 1.0;       // dense in training
  o.router_options.eval_threshold = 0.5;  // sparse in evaluation
  o.router_options.capacity.drop_tokens = false;
  MoELayer layer(o);
  auto x = at::randn({64, 8});
  layer->train();
  auto dense = layer->forward(x).stats;
  EXPECT_NEAR(dense.experts_per_token.item<double>(), 8.0, 1e-6);
  EXPECT_NEAR(dense.relative_expert_flops(2), 4.0, 1e-6);  // vs top-2 with the same expert size
  EXPECT_EQ(dense.experts_per_token_histogram[8].item<int64_t>(), 64);
  layer->eval();
  auto sparse = layer->forward(x).stats;
  EXPECT_LT(sparse.experts_per_token.item<double>(), 8.0);
  EXPECT_GE(sparse.experts_per_token.item<double>(), 1.0);
  auto hist = sparse.experts_per_token_histogram;
  EXPECT_EQ(hist.sum().item<int64_t>(), 64);
  EXPECT_EQ(hist[0].item<int64_t>(), 0);  // a threshold router keeps at least one expert
  auto counts = at::arange(hist.size(0), at::kLong);
  EXPECT_NEAR((hist * counts).sum().item<double>() / 64, sparse.experts_per_token.item<double>(), 1e-6);
  o.router_options.eval_threshold = 2;
  EXPECT_EQ(error_of([&] { MoELayer bad(o); }),
            "MoELayerOptions.router_options.eval_threshold must be -1 (same as threshold) or in (0, 1], got 2");
}

// ---- THOR stochastic ------------------------------------------------------------------------------

TEST(StochasticRouterTest, Granularities) {
  auto o = options(4, 8);
  o.train_granularity = "batch";
  o.eval_granularity = "token";
  StochasticRouter router(o);
  router->set_generator(at::make_generator<at::CPUGeneratorImpl>(1));
  auto x = at::randn({60, 4});
  RoutingContext bs;
  bs.leading_shape = {6, 10};
  router->train();
  auto batch = router->route(x, bs).expert_index;
  EXPECT_EQ(std::get<0>(at::_unique(batch)).numel(), 1);  // one draw for the whole call
  router->eval();
  auto token = router->route(x, bs);
  EXPECT_GT(std::get<0>(at::_unique(token.expert_index)).numel(), 1);
  EXPECT_TRUE(at::equal(token.weight, at::ones({60, 1})));
  EXPECT_EQ(token.capacity, -1);
  EXPECT_TRUE(token.aux_losses.empty());

  o.eval_granularity = "sequence";
  StochasticRouter per_sequence(o);
  per_sequence->eval();
  auto seq = per_sequence->route(x, bs).expert_index.view({6, 10});
  EXPECT_TRUE(at::equal(seq, seq.select(1, 0).unsqueeze(1).expand({6, 10})));
  o.eval_granularity = "position";
  StochasticRouter per_position(o);
  per_position->eval();
  auto pos = per_position->route(x, bs).expert_index.view({6, 10});
  EXPECT_TRUE(at::equal(pos, pos.select(0, 0).unsqueeze(0).expand({6, 10})));
  EXPECT_EQ(error_of([&] { per_position->route(x); }),
            "StochasticRouter: granularity 'position' needs a [B, S, d] input, got leading shape of rank 1");
  o.eval_granularity = "sentence";
  EXPECT_EQ(error_of([&] { StochasticRouter bad(o); }),
            "RouterOptions.eval_granularity must be one of batch, token, sequence or position, got 'sentence'");
}

TEST(StochasticRouterTest, CallerGeneratorMakesDrawsReproducibleAndPassesIndependent) {
  StochasticRouter router(options(4, 16));
  router->eval();
  auto x = at::randn({100, 4});
  router->set_generator(at::make_generator<at::CPUGeneratorImpl>(7));
  auto a1 = router->route(x).expert_index;
  auto a2 = router->route(x).expert_index;  // second pass: an independent draw
  router->set_generator(at::make_generator<at::CPUGeneratorImpl>(7));
  auto b1 = router->route(x).expert_index;
  EXPECT_TRUE(at::equal(a1, b1));
  EXPECT_FALSE(at::equal(a1, a2));
}

TEST(StochasticRouterTest, InferenceComputesOnlyTheChosenExpert) {
  MoELayerOptions o(6, 4, 8, 1);
  o.router = "stochastic";
  o.router_options.eval_granularity = "token";
  MoELayer layer(o);
  layer->to(at::kDouble);
  layer->eval();
  auto x = at::randn({20, 6}, at::kDouble);
  layer->router->set_generator(at::make_generator<at::CPUGeneratorImpl>(3));
  auto chosen = layer->router->route(x).expert_index.select(1, 0);
  layer->router->set_generator(at::make_generator<at::CPUGeneratorImpl>(3));
  auto out = layer->forward(x);
  EXPECT_EQ(out.stats.tokens_per_expert.sum().item<int64_t>(), 20);  // one expert per token, never all E
  for (int64_t t = 0; t < 20; ++t) {
    auto expected = layer->experts->expert(chosen[t].item<int64_t>())->forward(x.narrow(0, t, 1));
    ASSERT_TRUE(testing::all_close(out.output.narrow(0, t, 1), expected, testing::tolerance_for(at::kDouble))) << t;
  }
}

// ---- expert choice --------------------------------------------------------------------------------

TEST(StochasticRouterTest, DrawsComeFromTheCallersUniformSource) {
  RouterOptions o;
  o.d_model = 4;
  o.num_experts = 4;
  o.train_granularity = "token";
  StochasticRouter router(o);
  router->train();
  // floor(U · E): U = 0.1, 0.3, 0.74, 0.99 -> experts 0, 1, 2, 3.
  router->set_uniform_source([](at::IntArrayRef shape, const at::TensorOptions& options) {
    EXPECT_EQ(shape, at::IntArrayRef({4}));
    return at::tensor({0.1, 0.3, 0.74, 0.99}, options);
  });
  auto plan = router->route(at::randn({4, 4}));
  EXPECT_TRUE(at::equal(plan.expert_index.reshape({-1}), at::tensor(std::vector<int64_t>{0, 1, 2, 3})));
}

TEST(ExpertChoiceRouterTest, PaddingIsTakenOnlyWhenRealTokensRunOut) {
  torch::manual_seed(4);
  RouterOptions o;
  o.d_model = 4;
  o.num_experts = 2;
  o.top_k = 1;
  o.capacity.capacity_factor = 1.0;  // C = ceil(T / E) = 3 of 6 tokens per expert
  ExpertChoiceRouter router(o);
  RoutingContext context;
  context.padding = testing::bool_mask(std::vector<bool>{false, true, false, false, true, false});
  auto plan = router->route(at::randn({6, 4}), context);
  // 4 real tokens, 6 slots: both padding rows are the last choice of every expert.
  auto chosen_pad =
      plan.expert_index.index_select(0, at::tensor(std::vector<int64_t>{1, 4})).ge(0).sum().item<int64_t>();
  auto chosen_real = plan.expert_index.index_select(0, at::tensor(std::vector<int64_t>{0, 2, 3, 5})).ge(0).sum();
  EXPECT_EQ(chosen_real.item<int64_t>() + chosen_pad, 6);
  EXPECT_LE(chosen_pad, 2);
  EXPECT_GE(chosen_real.item<int64_t>(), 4);
}

TEST(ExpertChoiceRouterTest, EachExpertTakesItsTopTokens) {
  torch::manual_seed(2);
  auto o = options(8, 4, 2);  // capacity 2 · ceil(T / E)
  ExpertChoiceRouter router(o);
  auto x = at::randn({30, 8});
  auto plan = router->route(x);
  const int64_t C = 2 * ((30 + 3) / 4);
  EXPECT_EQ(plan.capacity, C);
  auto probs = at::softmax(at::matmul(x, router->weight.t()), 1);
  auto layout = build_layout(plan.expert_index, 4, plan.capacity, plan.priority);
  EXPECT_TRUE(at::equal(layout.tokens_per_expert, at::full({4}, C, at::kLong)));  // exactly full
  EXPECT_EQ(layout.num_dropped.item<int64_t>(), 0);
  for (int64_t e = 0; e < 4; ++e) {
    auto top = std::get<1>(probs.select(1, e).sort(/*stable=*/true, /*dim=*/0, /*descending=*/true)).narrow(0, 0, C);
    auto expected = std::get<0>(top.sort());
    auto got = plan.expert_index.eq(e).any(1).nonzero().squeeze(1);
    EXPECT_TRUE(at::equal(got, expected)) << "expert " << e;
  }
  // weights are the raw probabilities of the chosen (token, expert) pairs
  auto mask = plan.expert_index.ge(0);
  EXPECT_TRUE(testing::all_close(plan.weight.masked_select(mask),
                                 probs.gather(1, plan.expert_index.clamp_min(0)).masked_select(mask),
                                 testing::tolerance_for(at::kFloat)));
}

// ---- hash -----------------------------------------------------------------------------------------

TEST(HashRouterTest, FixedHashOfTokenIdOrPosition) {
  auto o = options(4, 8);
  HashRouter router(o);
  auto x = at::randn({12, 4});
  RoutingContext ctx;
  ctx.token_ids = at::tensor({5, 7, 5, 9, 1, 5, 7, 2, 3, 4, 5, 6}, at::kLong);
  auto plan = router->route(x, ctx);
  EXPECT_TRUE(at::equal(plan.expert_index.view({-1}), hash_to_expert(ctx.token_ids, 8, 0)));
  EXPECT_EQ(plan.expert_index[0][0].item<int64_t>(), plan.expert_index[2][0].item<int64_t>());  // same id, same expert
  EXPECT_EQ(error_of([&] { router->route(x); }),
            "HashRouter: hash_by='token' needs token ids (MoELayer::forward(x, token_ids)); none were given");
  o.hash_by = "position";
  HashRouter by_position(o);
  RoutingContext bs;
  bs.leading_shape = {3, 4};
  auto pos = by_position->route(x, bs).expert_index.view({3, 4});
  EXPECT_TRUE(at::equal(pos, pos.select(0, 0).unsqueeze(0).expand({3, 4})));
  // Spread: 1000 ids over 8 experts, no expert empty or holding more than twice its share.
  auto counts = at::bincount(hash_to_expert(at::arange(1000), 8, 0), {}, 8);
  EXPECT_GT(counts.min().item<int64_t>(), 0);
  EXPECT_LT(counts.max().item<int64_t>(), 250);
  o.hash_by = "word";
  EXPECT_EQ(error_of([&] { HashRouter bad(o); }), "RouterOptions.hash_by must be one of token or position, got 'word'");
}

// ---- every router ---------------------------------------------------------------------------------

MoELayer layer_with(const std::string& router) {
  MoELayerOptions o(6, 4, 8, 2);
  o.router = router;
  o.router_options.hash_by = "position";
  o.router_options.threshold = 0.8;
  return MoELayer(o);
}

class EveryRouterTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryRouterTest, DeterministicUnderASeed) {
  auto run = [&] {
    torch::manual_seed(11);
    auto layer = layer_with(GetParam());
    layer->train();
    auto x = at::randn({4, 5, 6}).requires_grad_();
    auto out = layer->forward(x);
    (out.output.pow(2).sum() + out.stats.total_aux_loss()).backward();
    return std::make_pair(out.output.detach(), x.grad());
  };
  auto [y1, g1] = run();
  auto [y2, g2] = run();
  EXPECT_TRUE(testing::bitwise_equal(y1, y2));
  EXPECT_TRUE(testing::bitwise_equal(g1, g2));
}

TEST_P(EveryRouterTest, NoNaNWithEqualOrHugeLogitsOrOneToken) {
  torch::manual_seed(12);
  auto layer = layer_with(GetParam());
  for (bool training : {true, false}) {
    layer->train(training);
    {
      torch::NoGradGuard g;
      for (auto& p : layer->router->parameters()) p.zero_();  // equal logits
    }
    auto equal = layer->forward(at::randn({2, 7, 6}));
    EXPECT_TRUE(at::isfinite(equal.output).all().item<bool>());
    EXPECT_TRUE(at::isfinite(equal.stats.total_aux_loss()).item<bool>());
    {
      torch::NoGradGuard g;
      for (auto& p : layer->router->parameters()) p.normal_().mul_(1e4);  // huge logits
    }
    auto huge = layer->forward(at::randn({2, 7, 6}) * 100);
    EXPECT_TRUE(at::isfinite(huge.output).all().item<bool>());
    EXPECT_TRUE(at::isfinite(huge.stats.total_aux_loss()).item<bool>());
    auto one = layer->forward(at::randn({1, 1, 6}));
    EXPECT_TRUE(at::isfinite(one.output).all().item<bool>());
  }
}

TEST_P(EveryRouterTest, ZeroTokens) {
  auto layer = layer_with(GetParam());
  for (bool training : {true, false}) {
    layer->train(training);
    auto out = layer->forward(at::zeros({0, 5, 6}));
    EXPECT_EQ(out.output.sizes(), (std::vector<int64_t>{0, 5, 6}));
    EXPECT_EQ(out.stats.num_tokens, 0);
  }
}

TEST_P(EveryRouterTest, GradientsByFiniteDifferences) {
  torch::manual_seed(13);
  auto layer = layer_with(GetParam());
  layer->to(at::kDouble);
  layer->eval();  // fixed routing for the stochastic router comes from its generator below
  auto x = at::randn({2, 4, 6}, at::kDouble).requires_grad_();
  std::vector<at::Tensor> leaves{x, layer->experts->expert(1)->w1, layer->experts->expert(2)->b2};
  for (auto& p : layer->router->parameters()) leaves.push_back(p);
  EXPECT_TRUE(testing::gradcheck(
      [&] {
        layer->router->set_generator(at::make_generator<at::CPUGeneratorImpl>(5));
        return layer->forward(x).output;
      },
      leaves));
}

// Every registered router, as the registry lists them: a new router is tested here without an edit.
INSTANTIATE_TEST_SUITE_P(Routers, EveryRouterTest, ::testing::ValuesIn(known_routers()),
                         [](const auto& test_info) { return test_info.param; });

}  // namespace
}  // namespace moe
