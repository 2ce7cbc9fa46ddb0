// MoELayer against an independent dense formulation in float64 (softmax router, top-k by sorting,
// one-hot cumsum capacity, every expert applied densely), gradients by finite differences for the
// input, router weights and expert weights, statistics, determinism and input checks.
#include "moe/layers/moe_layer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "dense_reference.h"
#include "errors.h"
#include "gradcheck.h"
#include "moe/core/error.h"
#include "tolerances.h"

namespace moe {
namespace {

struct LayerCase {
  const char* name;
  int64_t T, d, h, E, K;
  double capacity_factor;
  bool all_to_one;
  bool non_contiguous;
};
std::ostream& operator<<(std::ostream& os, const LayerCase& c) { return os << c.name; }

MoELayer make_layer(const LayerCase& c) {
  MoELayerOptions o(c.d, c.E, c.h, c.K);
  o.router_options.second_expert_policy = SecondExpertPolicy::kGreedy;
  o.router_options.capacity.capacity_factor = c.capacity_factor;
  MoELayer layer(o);
  layer->to(at::kDouble);
  if (c.all_to_one) {
    torch::NoGradGuard g;
    auto w = layer->router->named_parameters()["weight"];
    w.fill_(-1.0);
    w[0].fill_(1.0);  // with positive inputs, expert 0 has the largest logit for every token
    w.add_(at::randn(w.sizes(), w.options()) * 0.2);  // no ties among the others
  }
  return layer;
}

at::Tensor make_input(const LayerCase& c, at::Generator& gen) {
  auto x = at::randn({c.T, c.d}, gen, at::kDouble);
  if (c.all_to_one) x = x.abs() + 0.1;
  if (c.non_contiguous) x = x.t().contiguous().t();  // same values, column-major strides
  return x;
}

// The dense formulation: no layout, no packing, every expert on every token.
at::Tensor dense_reference(MoELayerImpl& layer, const at::Tensor& x, const LayerCase& c) {
  auto w = layer.router->named_parameters()["weight"];
  auto probs = at::softmax(at::matmul(x, w.t()), 1);
  auto idx = std::get<1>(probs.sort(1, /*descending=*/true)).narrow(1, 0, c.K).contiguous();
  auto weight = probs.gather(1, idx);
  const int64_t per_expert = (c.T + c.E - 1) / c.E;
  const int64_t capacity =
      std::min<int64_t>(c.T, static_cast<int64_t>(std::floor(c.capacity_factor * c.K * per_expert)));
  auto routing = testing::one_hot_routing(idx, weight, c.E, capacity,
                                          c.K == 1 ? WeightNormalization::kNone : WeightNormalization::kKept);
  auto gate = routing.combine_weights.sum(2);  // [T, E]
  auto y = at::zeros_like(x);
  for (int64_t e = 0; e < c.E; ++e) {
    auto f = layer.experts->expert(e);
    auto out = at::matmul(at::relu(at::matmul(x, f->w1) + f->b1), f->w2) + f->b2;
    y = y + gate.select(1, e).unsqueeze(1) * out;
  }
  return y;
}

class MoELayerCaseTest : public ::testing::TestWithParam<LayerCase> {};

TEST_P(MoELayerCaseTest, MatchesDenseFormulationInFloat64) {
  const auto c = GetParam();
  torch::manual_seed(3);
  auto layer = make_layer(c);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  auto x = make_input(c, gen);
  auto out = layer->forward(x);
  auto ref = dense_reference(*layer, x, c);
  EXPECT_TRUE(testing::all_close(out.output, ref, testing::tolerance_for(at::kDouble), c.T > 0));
  EXPECT_EQ(out.stats.num_tokens, c.T);
  EXPECT_EQ(out.stats.tokens_per_expert.sum().item<int64_t>(),
            static_cast<int64_t>(std::llround(out.stats.experts_per_token.item<double>() * std::max<int64_t>(c.T, 1))));
  if (c.all_to_one) {
    EXPECT_EQ(out.stats.requested_per_expert[0].item<int64_t>(), c.T);
  }
}

TEST_P(MoELayerCaseTest, GradientsByFiniteDifferences) {
  const auto c = GetParam();
  if (c.T > 16) GTEST_SKIP() << "finite differences on the small cases only";
  torch::manual_seed(4);
  auto layer = make_layer(c);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(10);
  auto x = make_input(c, gen).detach().requires_grad_();
  auto router_w = layer->router->named_parameters()["weight"];
  auto e0 = layer->experts->expert(0);
  auto e_last = layer->experts->expert(c.E - 1);
  std::vector<at::Tensor> leaves{x, router_w, e0->w1, e0->b1, e_last->w2, e_last->b2};
  EXPECT_TRUE(testing::gradcheck([&] { return layer->forward(x).output; }, leaves));
}

INSTANTIATE_TEST_SUITE_P(Cases, MoELayerCaseTest,
                         ::testing::Values(LayerCase{"top1", 10, 6, 5, 4, 1, 1.0, false, false},
                                           LayerCase{"top2", 12, 6, 5, 4, 2, 1.0, false, false},
                                           LayerCase{"k_equals_E", 8, 4, 3, 3, 3, 1.0, false, false},
                                           LayerCase{"capacity_overflow", 14, 5, 4, 3, 2, 0.5, false, false},
                                           LayerCase{"expert_with_zero_tokens", 3, 4, 3, 8, 1, 2.0, false, false},
                                           LayerCase{"all_to_one_expert", 9, 4, 3, 4, 2, 1.0, true, false},
                                           LayerCase{"zero_tokens", 0, 4, 3, 4, 2, 1.0, false, false},
                                           LayerCase{"non_contiguous_input", 11, 6, 4, 4, 2, 1.0, false, true},
                                           LayerCase{"larger", 200, 16, 24, 8, 2, 1.25, false, false}),
                         [](const auto& test_info) { return std::string(test_info.param.name); });

// Padding (fairseq's input mask): no expert, no capacity slot, a zero output row, and out of the
// balance loss's top-1 counts (P and f still divide by all T rows). Against the dense float64
// formulation with the padding rows' choices emptied, values and gradients.
TEST(MoELayerTest, PaddingGetsNoExpertNoSlotAndNoCountInFloat64) {
  const LayerCase c{"padded_overflow", 14, 5, 4, 3, 2, 0.5, false, false};  // capacity 5 < requests
  torch::manual_seed(11);
  auto layer = make_layer(c);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(12);
  auto x = make_input(c, gen);
  std::vector<bool> pad_rows(14, false);
  for (int t : {0, 1, 4, 5, 10}) pad_rows[static_cast<size_t>(t)] = true;  // early rows: they would take slots
  const auto padding = testing::bool_mask(pad_rows);
  auto out = layer->forward(x, at::Tensor(), padding);
  // The reference: choices by sorting, padding rows emptied, one-hot capacity slots, dense experts.
  auto w = layer->router->named_parameters()["weight"];
  auto probs = at::softmax(at::matmul(x, w.t()), 1);
  auto idx = std::get<1>(probs.sort(1, /*descending=*/true)).narrow(1, 0, c.K).contiguous();
  auto weight = probs.gather(1, idx);
  auto emptied = idx.masked_fill(padding.unsqueeze(1), -1);
  auto routing = testing::one_hot_routing(emptied, weight, c.E, 5, WeightNormalization::kKept);
  auto gate = routing.combine_weights.sum(2);
  auto ref = at::zeros_like(x);
  for (int64_t e = 0; e < c.E; ++e) {
    auto f = layer->experts->expert(e);
    ref = ref + gate.select(1, e).unsqueeze(1) * (at::matmul(at::relu(at::matmul(x, f->w1) + f->b1), f->w2) + f->b2);
  }
  EXPECT_TRUE(testing::all_close(out.output, ref, testing::tolerance_for(at::kDouble)));
  EXPECT_EQ(out.output.index_select(0, padding.nonzero().squeeze(1)).abs().max().item<double>(), 0.0);
  // Without the mask the padding rows would have taken slots from the real tokens.
  auto unmasked = layer->forward(x).output;
  EXPECT_GT((unmasked - out.output).index_select(0, (~padding).nonzero().squeeze(1)).abs().max().item<double>(), 1e-6);
  // The balance loss: P over all 14 rows, f over the 9 real rows' top-1 divided by 14.
  auto top1 = idx.select(1, 0);
  double expected = 0;
  for (int64_t e = 0; e < c.E; ++e) {
    double count = 0;
    for (int64_t t = 0; t < c.T; ++t) count += (!pad_rows[static_cast<size_t>(t)] && top1[t].item<int64_t>() == e);
    expected += probs.select(1, e).mean().item<double>() * count / c.T;
  }
  EXPECT_NEAR(out.stats.aux_losses.at("balance").value.item<double>(), expected * c.E, 1e-12);
  // Statistics are per real token.
  EXPECT_EQ(out.stats.padding.item<int64_t>(), 5);
  EXPECT_NEAR(out.stats.selected_per_token.item<double>(), 2.0, 1e-6);
  EXPECT_NEAR(out.stats.experts_per_token.item<double>(), gate.gt(0).sum().item<double>() / 9.0, 1e-6);
  // Gradients through the masked path.
  auto xg = x.detach().requires_grad_();
  std::vector<at::Tensor> leaves{xg, w, layer->experts->expert(0)->w1, layer->experts->expert(2)->b2};
  EXPECT_TRUE(testing::gradcheck([&] { return layer->forward(xg, at::Tensor(), padding).output; }, leaves));
  // mask_padding = false routes padding like any token (XMoE's official code).
  auto o = layer->options;
  o.router_options.mask_padding = false;
  MoELayer plain(o);
  plain->to(at::kDouble);
  {
    torch::NoGradGuard g;
    for (auto& p : plain->named_parameters()) p.value().copy_(layer->named_parameters()[p.key()]);
  }
  EXPECT_TRUE(at::allclose(plain->forward(x, at::Tensor(), padding).output, unmasked));
}

TEST(MoELayerTest, ThreeDimensionalInputKeepsItsShape) {
  MoELayer layer(MoELayerOptions(8, 4, 16, 2));
  auto x = at::randn({2, 5, 8});
  auto out = layer->forward(x);
  EXPECT_EQ(out.output.sizes(), x.sizes());
  EXPECT_EQ(out.stats.num_tokens, 10);
}

TEST(MoELayerTest, SingleExpertEqualsDenseFFN) {
  // E = 1, k = 1, no capacity limit: the router weight is p = 1 and the layer is its expert.
  MoELayerOptions o(6, 1, 10, 1);
  o.router_options.capacity.drop_tokens = false;
  MoELayer layer(o);
  DenseFFN dense(DenseFFNOptions{o.experts.ffn});
  {
    torch::NoGradGuard g;
    for (auto& p : dense->ffn->named_parameters())
      p.value().copy_(layer->experts->expert(0)->named_parameters()[p.key()]);
  }
  auto x = at::randn({7, 6});
  auto a = layer->forward(x);
  auto b = dense->forward(x);
  EXPECT_TRUE(testing::all_close(a.output, b.output, testing::tolerance_for(at::kFloat)));
  EXPECT_EQ(b.stats.tokens_per_expert.item<int64_t>(), 7);
  EXPECT_EQ(b.stats.aux_losses.size(), 0u);
  EXPECT_EQ(b.stats.total_aux_loss().item<double>(), 0.0);
}

TEST(MoELayerTest, StatsAndTotalAuxLoss) {
  MoELayerOptions o(4, 4, 8, 2);
  o.router_options.capacity.capacity_factor = 0.25;  // capacity floor(0.25 * 2 * 5) = 2 for T = 20
  o.router_options.z_loss_coef = 0.5;
  MoELayer layer(o);
  auto out = layer->forward(at::randn({20, 4}));
  const auto& s = out.stats;
  EXPECT_LE(s.tokens_per_expert.max().item<int64_t>(), 2);
  EXPECT_EQ(s.requested_per_expert.sum().item<int64_t>(), 40);
  EXPECT_NEAR(s.selected_per_token.item<double>(), 2.0, 1e-6);
  const double kept = s.tokens_per_expert.sum().item<double>();
  EXPECT_NEAR(s.dropped_fraction.item<double>(), (40 - kept) / 40, 1e-6);
  EXPECT_NEAR(s.experts_per_token.item<double>(), kept / 20, 1e-6);
  const double expected =
      0.01 * s.aux_losses.at("balance").value.item<double>() + 0.5 * s.aux_losses.at("z").value.item<double>();
  EXPECT_NEAR(s.total_aux_loss().item<double>(), expected, 1e-6);
  EXPECT_NE(s.to_string().find("dropped="), std::string::npos);
}

TEST(MoELayerTest, SameSeedSameBits) {
  auto run = [] {
    torch::manual_seed(42);
    MoELayerOptions o(8, 4, 16, 2);
    o.router_options.jitter = 0.01;  // sampling + jitter draw from the default generator
    o.experts.ffn.activation_dropout = 0.1;
    MoELayer layer(o);
    layer->train();
    auto x = at::randn({33, 8}).requires_grad_();
    auto out = layer->forward(x);
    (out.output.pow(2).sum() + out.stats.total_aux_loss()).backward();
    return std::make_pair(out.output.detach(), x.grad());
  };
  auto [y1, g1] = run();
  auto [y2, g2] = run();
  EXPECT_TRUE(testing::bitwise_equal(y1, y2));
  EXPECT_TRUE(testing::bitwise_equal(g1, g2));
}

using testing::error_of;

TEST(MoELayerOptionsTest, InvalidOptionsNameTheField) {
  EXPECT_EQ(error_of([] { MoELayer(MoELayerOptions(8, 0, 16, 1)); }),
            "MoELayerOptions.num_experts must be >= 1, got 0");
  EXPECT_EQ(error_of([] { MoELayer(MoELayerOptions(8, 4, 16, 5)); }),
            "MoELayerOptions.router_options.top_k must be in [1, num_experts=4], got 5");
  EXPECT_EQ(error_of([] { MoELayer(MoELayerOptions(8, 4, 0, 2)); }),
            "MoELayerOptions.experts.ffn.hidden must be >= 1, got 0");
  EXPECT_EQ(error_of([] {
              MoELayerOptions o(8, 4, 16, 2);
              o.router_options.capacity.capacity_factor = -1;
              MoELayer{o};
            }),
            "MoELayerOptions.router_options.capacity.capacity_factor must be > 0, got -1");
  EXPECT_EQ(error_of([] { parse_activation("tanh"); }), "activation must be one of relu, gelu, swiglu; got 'tanh'");
  EXPECT_EQ(error_of([] {
              MoELayerOptions o(8, 4, 16, 2);
              o.experts.first_expert = 2;
              MoELayer{o};
            }),
            "MoELayerOptions.experts.first_expert/num_local_experts must be 0/-1 (got 2/-1): set "
            "MoELayerOptions.expert_group to shard the experts");
  EXPECT_EQ(error_of([] {
              MoELayerOptions o(8, 4, 16, 2);
              o.router = "bogus";
              MoELayer{o};
            }).rfind("unknown router 'bogus'; known routers: ", 0),
            0u);
  EXPECT_EQ(error_of([] {
              MoELayerOptions o(8, 4, 16, 2);
              o.experts.ffn.output_dropout = 1.0;
              MoELayer{o};
            }),
            "MoELayerOptions.experts.ffn.output_dropout must be in [0, 1), got 1");
}

TEST(MoELayerOptionsTest, InvalidInputsNameTheProblem) {
  MoELayerOptions o(8, 4, 16, 2);
  o.check_finite = true;
  MoELayer layer(o);
  EXPECT_EQ(error_of([&] { layer->forward(at::randn({8})); }),
            "MoELayer: input must have rank >= 2 ([T, d] or [B, S, d]), got rank 1 with shape [8]");
  EXPECT_EQ(error_of([&] {
              layer->forward(at::randn({3, 7}));
            }),
            "MoELayer: input's last dimension must be d_model=8, got shape [3, 7]");
  EXPECT_EQ(error_of([&] {
              layer->forward(at::ones({3, 8}, at::kLong));
            }),
            "MoELayer: input dtype must be floating, got Long");
  EXPECT_EQ(error_of([&] {
              layer->forward(at::randn({3, 8}, at::kDouble));
            }),
            "MoELayer: input dtype Double must match the layer's parameter dtype Float");
  EXPECT_EQ(error_of([&] {
              layer->forward(at::randn({3, 8}, at::TensorOptions().device(at::kMeta)));
            }),
            "MoELayer: input is on meta but the layer's parameters are on cpu");
  auto bad = at::randn({3, 8});
  bad[1][2] = std::nan("");
  EXPECT_EQ(error_of([&] { layer->forward(bad); }), "MoELayer: input contains NaN or Inf (check_finite is on)");
  bad[1][2] = INFINITY;
  EXPECT_EQ(error_of([&] { layer->forward(bad); }), "MoELayer: input contains NaN or Inf (check_finite is on)");
}

}  // namespace
}  // namespace moe
