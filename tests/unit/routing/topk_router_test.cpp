// Top-k router (Switch/GShard), capacity formulas, auxiliary losses against hand-computed values,
// weight normalisation, sampling determinism, numerical edge cases and the registry.
#include "moe/routing/topk_router.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "dense_reference.h"
#include "moe/core/error.h"
#include "moe/layers/presets.h"
#include "moe/routing/capacity.h"
#include "moe/routing/losses.h"
#include "tolerances.h"

namespace moe {
namespace {

RouterOptions options(int64_t d, int64_t E, int64_t k) {
  RouterOptions o;
  o.d_model = d;
  o.num_experts = E;
  o.top_k = k;
  return o;
}

TEST(LossesTest, BalanceLossHandComputed) {
  // top-1 = (0, 1, 0): f = (2/3, 1/3); P = (2/3, 1/3); E Σ f P = 2 (4/9 + 1/9) = 10/9.
  auto probs = at::tensor({0.7, 0.3, 0.4, 0.6, 0.9, 0.1}, at::kDouble).view({3, 2});
  auto loss = load_balancing_loss(probs, probs.argmax(1));
  EXPECT_NEAR(loss.item<double>(), 10.0 / 9.0, 1e-15);
  // Perfect balance gives 1.
  auto uniform = at::full({4, 4}, 0.25, at::kDouble);
  EXPECT_NEAR(load_balancing_loss(uniform, at::arange(4)).item<double>(), 1.0, 1e-15);
  EXPECT_EQ(load_balancing_loss(at::zeros({0, 3}, at::kDouble), at::zeros({0}, at::kLong)).item<double>(), 0.0);
}

TEST(LossesTest, ZLossHandComputed) {
  auto logits = at::tensor({1.0, 2.0, 0.0, 0.0, 3.0, -1.0}, at::kDouble).view({3, 2});
  const double l0 = std::log(std::exp(1.0) + std::exp(2.0));
  const double l1 = std::log(2.0);
  const double l2 = std::log(std::exp(3.0) + std::exp(-1.0));
  EXPECT_NEAR(router_z_loss(logits).item<double>(), (l0 * l0 + l1 * l1 + l2 * l2) / 3.0, 1e-14);
}

TEST(CapacityTest, FormulasMatchFairseqAndDeepSpeed) {
  CapacityOptions c;
  // fairseq top2gating: 2 * ceil(T / E).
  EXPECT_EQ(compute_capacity(c, 10, 4, 2, true), 6);
  // fairseq top1gating: int(γ * ceil(T / E)).
  c.capacity_factor = 1.25;
  EXPECT_EQ(compute_capacity(c, 10, 4, 1, true), 3);
  // evaluation factor is separate
  c.eval_capacity_factor = 2.0;
  EXPECT_EQ(compute_capacity(c, 10, 4, 1, false), 6);
  // evaluation token fraction: ceil(frac * T)
  c.eval_token_fraction = 0.25;
  EXPECT_EQ(compute_capacity(c, 10, 4, 1, false), 3);
  EXPECT_EQ(compute_capacity(c, 10, 4, 1, true), 3);  // training ignores the fraction
  // DeepSpeed / XMoE: max(ceil(T / E * γ), min_capacity), clamped to T.
  CapacityOptions ds;
  ds.formula = CapacityFormula::kDeepSpeed;
  ds.capacity_factor = 1.5;
  ds.min_capacity = 4;
  EXPECT_EQ(compute_capacity(ds, 100, 8, 1, true), 19);
  EXPECT_EQ(compute_capacity(ds, 100, 8, 2, true), 38);  // DeepSpeed top-2 passes 2γ
  EXPECT_EQ(compute_capacity(ds, 50, 3, 1, true), 25);   // (50/3)·1.5 evaluates to 25.0 in that order, as in Python
  EXPECT_EQ(compute_capacity(ds, 10, 8, 1, true), 4);
  EXPECT_EQ(compute_capacity(ds, 3, 8, 1, true), 3);  // min capacity above T is clamped to T
  // XMoE's top-k baseline: max(ceil(T / E * γ), 4) whatever k (hand values: 100/8·1.5 = 18.75).
  CapacityOptions share = ds;
  share.formula = CapacityFormula::kTokenShare;
  EXPECT_EQ(compute_capacity(share, 100, 8, 1, true), 19);
  EXPECT_EQ(compute_capacity(share, 100, 8, 2, true), 19);
  EXPECT_EQ(compute_capacity(share, 10, 8, 2, true), 4);
  EXPECT_EQ(parse_capacity_formula("token_share"), CapacityFormula::kTokenShare);
  EXPECT_EQ(to_string(CapacityFormula::kTokenShare), "token_share");
  ds.drop_tokens = false;
  EXPECT_EQ(compute_capacity(ds, 10, 8, 2, true), -1);
  EXPECT_EQ(compute_capacity(c, 0, 4, 2, true), 0);
}

TEST(CapacityTest, RejectsInvalidValues) {
  CapacityOptions c;
  c.capacity_factor = 0;
  try {
    c.validate("RouterOptions");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "RouterOptions.capacity.capacity_factor must be > 0, got 0");
  }
  c.capacity_factor = 1;
  c.eval_token_fraction = 1.5;
  EXPECT_THROW(c.validate(), Error);
  EXPECT_THROW(parse_capacity_formula("fixed"), Error);
}

// Router with weight = identity-like rows so that logits are known.
TopKRouter crafted_router(int64_t k) {
  auto o = options(3, 3, k);
  o.second_expert_policy = SecondExpertPolicy::kGreedy;
  TopKRouter r(o);
  torch::NoGradGuard g;
  r->weight.copy_(at::eye(3));
  return r;
}

TEST(TopKRouterTest, GreedyTopTwoSelectionWeightsAndCapacity) {
  auto router = crafted_router(2);
  router->eval();
  // logits == x; token 0 prefers 2 then 0, token 1 prefers 1 then 2.
  auto x = at::tensor({1.0f, 0.0f, 2.0f, 0.0f, 3.0f, 1.0f}).view({2, 3});
  auto plan = router->route(x);
  EXPECT_TRUE(at::equal(plan.expert_index, at::tensor({2, 0, 1, 2}, at::kLong).view({2, 2})));
  auto probs = at::softmax(x, 1);
  EXPECT_TRUE(testing::all_close(plan.weight, probs.gather(1, plan.expert_index), testing::tolerance_for(at::kFloat)));
  EXPECT_EQ(plan.normalization, WeightNormalization::kKept);                         // auto for k = 2
  EXPECT_EQ(plan.capacity, 2);                                                       // min(2 * ceil(2/3), T=2)
  EXPECT_FALSE(plan.priority.defined());                                             // rank-major FCFS
  EXPECT_EQ(crafted_router(1)->route(x).normalization, WeightNormalization::kNone);  // Switch
}

TEST(TopKRouterTest, EvaluationCapacity) {
  auto o = options(4, 4, 2);
  o.capacity.capacity_factor = 1.0;
  o.capacity.eval_capacity_factor = 0.5;
  TopKRouter router(o);
  auto x = at::randn({40, 4});
  router->train();
  EXPECT_EQ(router->route(x).capacity, 20);  // 2 · ceil(40/4)
  router->eval();
  EXPECT_EQ(router->route(x).capacity, 10);  // floor(0.5 · 2 · 10)
  o.capacity.eval_token_fraction = 1.0;      // generation: nothing dropped
  TopKRouter generating(o);
  generating->eval();
  EXPECT_EQ(generating->route(x).capacity, 40);
}

TEST(TopKRouterTest, AuxLossesCarryCoefficients) {
  auto o = options(3, 3, 1);
  o.balance_loss_coef = 0.01;
  o.z_loss_coef = 0.001;
  TopKRouter router(o);
  auto x = at::randn({16, 3});
  auto plan = router->route(x);
  auto logits = at::matmul(x, router->weight.t());
  auto probs = at::softmax(logits, 1);
  EXPECT_NEAR(plan.aux_losses.at("balance").value.item<double>(),
              load_balancing_loss(probs, probs.argmax(1)).item<double>(), 1e-6);
  EXPECT_NEAR(plan.aux_losses.at("z").value.item<double>(), router_z_loss(logits).item<double>(), 1e-5);
  EXPECT_EQ(plan.aux_losses.at("balance").coefficient, 0.01);
  EXPECT_EQ(plan.aux_losses.at("z").coefficient, 0.001);
  // The balance loss reaches the router weight.
  plan.aux_losses.at("balance").value.backward();
  ASSERT_TRUE(router->weight.grad().defined());
  EXPECT_GT(router->weight.grad().abs().sum().item<double>(), 0);
}

TEST(TopKRouterTest, GumbelSamplingIsSeededAndNeverRepeatsTheFirstExpert) {
  auto o = options(8, 6, 3);
  TopKRouter router(o);
  router->train();
  auto x = at::randn({200, 8});
  router->set_generator(at::make_generator<at::CPUGeneratorImpl>(5));
  auto a = router->route(x).expert_index;
  router->set_generator(at::make_generator<at::CPUGeneratorImpl>(5));
  auto b = router->route(x).expert_index;
  router->set_generator(at::make_generator<at::CPUGeneratorImpl>(6));
  auto c = router->route(x).expert_index;
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, c));
  // Slot 0 is the plain argmax; later slots are distinct experts.
  EXPECT_TRUE(at::equal(a.select(1, 0), at::matmul(x, router->weight.t()).argmax(1)));
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = i + 1; j < 3; ++j) EXPECT_FALSE(a.select(1, i).eq(a.select(1, j)).any().item<bool>());
  }
  // Evaluation is greedy unless sample_in_eval.
  router->eval();
  auto greedy = router->route(x).expert_index;
  auto sorted = std::get<1>(at::matmul(x, router->weight.t()).sort(1, true)).narrow(1, 0, 3);
  EXPECT_TRUE(at::equal(greedy, sorted));
}

// The sampled second expert, hand-computed: first = argmax p; later ones = argmax of logits + Gumbel
// noise with the earlier picks masked (fairseq top2gating). The noise comes from the caller: a
// tensor (recorded draws of another implementation) or U(0, 1) draws through a callback.
TEST(TopKRouterTest, SampledSecondExpertFromCallerSuppliedNoise) {
  RouterOptions o;
  o.d_model = 2;
  o.num_experts = 4;
  o.top_k = 2;
  o.normalization = WeightNormalization::kNone;
  TopKRouter router(o);
  router->train();
  {
    torch::NoGradGuard g;  // logits = hidden · W^T with W = identity rows: token t's logits are chosen below
    router->weight.copy_(at::tensor({1.0, 0.0, 0.0, 1.0, 0.5, 0.5, -1.0, 0.0}).view({4, 2}));
  }
  auto hidden = at::tensor({2.0, 1.0, 0.0, 3.0}).view({2, 2});  // logits: [2, 1, 1.5, -2], [0, 3, 1.5, 0]
  RoutingContext context;
  context.gumbel_noise = at::tensor({0.0, 0.2, 0.0, 9.0,  // token 0: first 0; 1+0.2, 1.5, -2+9 -> expert 3
                                     0.0, 5.0, 0.0, 1.0})
                             .view({2, 4});  // token 1: first 1; 0, 1.5, 1 -> expert 2
  auto plan = router->route(hidden, context);
  EXPECT_TRUE(at::equal(plan.expert_index, at::tensor(std::vector<int64_t>{0, 3, 1, 2}).view({2, 2})));
  // Gumbel noise -log(-log(u)) from U draws: u = 0.999 on expert 1 of token 0 (noise 6.9) wins.
  router->set_uniform_source([](at::IntArrayRef shape, const at::TensorOptions& options) {
    auto u = at::full(shape, 0.5, options);  // noise 0.367 everywhere
    u[0][1] = 0.999;
    return u;
  });
  plan = router->route(hidden);
  EXPECT_EQ(plan.expert_index[0][1].item<int64_t>(), 1);  // 1 + 6.9 beats 1.5 + 0.37
  EXPECT_EQ(plan.expert_index[1][1].item<int64_t>(), 2);  // 1.5 + 0.37 beats 0 + 0.37 (expert 1 is first)
  // Evaluation without sample_in_eval: greedy, no draw at all.
  router->eval();
  router->set_uniform_source([](at::IntArrayRef, const at::TensorOptions&) -> at::Tensor {
    ADD_FAILURE() << "no draw in greedy evaluation";
    return {};
  });
  EXPECT_TRUE(at::equal(router->route(hidden).expert_index, at::tensor(std::vector<int64_t>{0, 2, 1, 2}).view({2, 2})));
}

// XMoE's top-k baseline preset: capacity max(ceil(T/E·γ), 4) without the factor k, noise on the
// later experts in evaluation too, raw probabilities as weights.
TEST(TopKRouterTest, XMoETopKBaselinePreset) {
  auto o = xmoe_topk_layer_options(8, 8, 16, /*top_k=*/2);
  EXPECT_EQ(o.router, "topk");
  const auto& r = o.router_options;
  EXPECT_EQ(compute_capacity(r.capacity, 100, 8, 2, true), 25);   // ceil(100/8 · 2) = 25, not 50
  EXPECT_EQ(compute_capacity(r.capacity, 10, 8, 2, true), 4);     // the floor of 4
  EXPECT_EQ(compute_capacity(r.capacity, 100, 8, 2, false), 25);  // γ = 2 in evaluation too
  EXPECT_TRUE(r.sample_in_eval);
  EXPECT_EQ(r.normalization, WeightNormalization::kNone);
  EXPECT_EQ(o.experts.init, ExpertInit::kReplicated);
  MoELayer layer(o);
  layer->eval();
  auto x = at::randn({16, 8});
  torch::manual_seed(1);
  auto a = layer->forward(x).output;
  torch::manual_seed(2);
  EXPECT_FALSE(at::equal(a, layer->forward(x).output)) << "evaluation must sample the second expert";
}

TEST(LossesTest, BalanceLossLeavesPaddingOutOfTheCountsOnly) {
  // probs of 4 rows over 2 experts; row 2 is padding. P_e = mean over all 4 rows; f_e counts the
  // top-1 of rows 0, 1, 3 but divides by 4 (papers.md 8.1: the official code's input mask).
  auto probs = at::tensor({0.9, 0.1, 0.2, 0.8, 0.7, 0.3, 0.6, 0.4}, at::kDouble).view({4, 2});
  auto top1 = at::tensor(std::vector<int64_t>{0, 1, 0, 0});
  auto padding = testing::bool_mask(std::vector<bool>{false, false, true, false});
  const double P0 = (0.9 + 0.2 + 0.7 + 0.6) / 4, P1 = (0.1 + 0.8 + 0.3 + 0.4) / 4;
  const double f0 = 2.0 / 4, f1 = 1.0 / 4;
  EXPECT_NEAR(load_balancing_loss(probs, top1, padding).item<double>(), 2 * (f0 * P0 + f1 * P1), 1e-15);
  EXPECT_NEAR(load_balancing_loss(probs, top1).item<double>(), 2 * (3.0 / 4 * P0 + f1 * P1), 1e-15);
}

TEST(TopKRouterTest, JitterOnlyInTraining) {
  auto o = options(4, 4, 1);
  o.jitter = 0.1;
  TopKRouter router(o);
  auto x = at::randn({32, 4});
  router->eval();
  auto b_eval = router->route(x).aux_losses.at("balance").value.item<double>();
  EXPECT_EQ(router->route(x).aux_losses.at("balance").value.item<double>(), b_eval);
  router->train();
  EXPECT_NE(router->route(x).aux_losses.at("balance").value.item<double>(), b_eval);
}

TEST(TopKRouterTest, NoNaNWithEqualHugeOrSingleTokenLogits) {
  auto o = options(4, 4, 2);
  TopKRouter router(o);
  router->train();
  {
    torch::NoGradGuard g;
    router->weight.zero_();
  }
  auto equal = router->route(at::randn({5, 4}));
  EXPECT_TRUE(at::isfinite(equal.weight).all().item<bool>());
  EXPECT_NEAR(equal.aux_losses.at("balance").value.item<double>(), 1.0, 1e-6);  // all top-1 on expert 0, P uniform
  {
    torch::NoGradGuard g;
    router->weight.copy_(at::eye(4) * 1e20);
  }
  auto huge = router->route(at::randn({7, 4}) * 1e8);
  EXPECT_TRUE(at::isfinite(huge.weight).all().item<bool>());
  EXPECT_EQ(huge.aux_losses.count("z"), 0u);  // off (coefficient 0): no inf · 0 in the objective
  EXPECT_TRUE(at::isfinite(huge.aux_losses.at("balance").value).item<bool>());
  auto single = router->route(at::randn({1, 4}));
  EXPECT_EQ(single.expert_index.sizes(), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(at::isfinite(single.weight).all().item<bool>());
}

TEST(WeightNormalizationTest, NoneSelectedKept) {
  auto w = at::tensor({0.5, 0.3, 0.6, 0.2}, at::kDouble).view({2, 2});
  auto kept = at::tensor({1, 0, 1, 1}, at::kInt).view({2, 2}).to(at::kBool);
  auto none = normalize_combine_weights(w, at::ones({2, 2}, at::kBool), kept, WeightNormalization::kNone);
  EXPECT_TRUE(at::equal(none, at::tensor({0.5, 0.0, 0.6, 0.2}, at::kDouble).view({2, 2})));
  auto selected = at::ones({2, 2}, at::kBool);
  auto over_kept = normalize_combine_weights(w, selected, kept, WeightNormalization::kKept);
  EXPECT_TRUE(testing::all_close(over_kept, at::tensor({1.0, 0.0, 0.75, 0.25}, at::kDouble).view({2, 2}),
                                 testing::tolerance_for(at::kDouble)));
  auto over_selected = normalize_combine_weights(w, selected, kept, WeightNormalization::kSelected);
  EXPECT_TRUE(testing::all_close(over_selected, at::tensor({0.625, 0.0, 0.75, 0.25}, at::kDouble).view({2, 2}),
                                 testing::tolerance_for(at::kDouble)));
  // Nothing kept: zeros, not NaN.
  auto none_kept = normalize_combine_weights(w, selected, at::zeros({2, 2}, at::kBool), WeightNormalization::kKept);
  // An empty slot's weight never enters the kSelected sum.
  auto padded = normalize_combine_weights(w, kept, kept, WeightNormalization::kSelected);
  EXPECT_NEAR(padded[0][0].item<double>(), 1.0, 1e-15);
  EXPECT_EQ(none_kept.abs().sum().item<double>(), 0.0);
}

TEST(RouterRegistryTest, MakeRouterByNameAndUnknownNames) {
  auto router = make_router("topk", options(4, 4, 2));
  EXPECT_NE(dynamic_cast<TopKRouterImpl*>(router.get()), nullptr);
  try {
    make_router("nope", options(4, 4, 2));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("unknown router 'nope'; known routers: ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("topk"), std::string::npos);
  }
  EXPECT_THROW(register_router("topk", [](const RouterOptions& o) { return std::make_shared<TopKRouterImpl>(o); }),
               Error);
}

TEST(RouterOptionsTest, InvalidValuesNameTheField) {
  auto expect_message = [](RouterOptions o, const std::string& message) {
    try {
      TopKRouter r(o);
      ADD_FAILURE() << "no error for " << message;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), message);
    }
  };
  expect_message(options(4, 0, 1), "RouterOptions.num_experts must be >= 1, got 0");
  expect_message(options(4, 4, 5), "RouterOptions.top_k must be in [1, num_experts=4], got 5");
  expect_message(options(0, 4, 1), "RouterOptions.d_model must be >= 1, got 0");
  auto o = options(4, 4, 1);
  o.jitter = 1.5;
  expect_message(o, "RouterOptions.jitter must be in [0, 1), got 1.5");
  o = options(4, 4, 1);
  o.balance_loss_coef = -1;
  expect_message(o, "RouterOptions.balance_loss_coef must be >= 0, got -1");
  o = options(4, 4, 1);
  o.extra["alpha"] = "x1";
  EXPECT_THROW(o.extra_double("alpha", 0), Error);
  EXPECT_EQ(o.extra_double("beta", 2.5), 2.5);
}

}  // namespace
}  // namespace moe
