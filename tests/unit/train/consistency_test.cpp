// THOR's consistency loss against a float64 hand formula, its robustness to underflow, gradients,
// the two-pass step's normalisation, and the identity THOR(E = 1) == R-Drop.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gradcheck.h"
#include "moe/core/error.h"
#include "moe/layers/moe_layer.h"
#include "moe/train/consistency.h"
#include "tolerances.h"

namespace moe {
namespace {

TEST(ConsistencyLossTest, MatchesSymmetricKLInFloat64) {
  auto a = at::randn({3, 4, 7}, at::kDouble);
  auto b = at::randn({3, 4, 7}, at::kDouble);
  auto pad = at::zeros({3, 4}, at::kBool);
  pad[2][3] = true;
  pad[0][1] = true;
  double expected = 0;
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 4; ++j) {
      if (pad[i][j].item<bool>()) continue;
      auto pa = at::softmax(a[i][j], 0), pb = at::softmax(b[i][j], 0);
      // ½ [KL(Pa‖Pb) + KL(Pb‖Pa)]
      expected += 0.5 * ((pa * (pa.log() - pb.log())).sum() + (pb * (pb.log() - pa.log())).sum()).item<double>();
    }
  }
  EXPECT_NEAR(consistency_loss(a, b, pad).item<double>(), expected, 1e-12);
  EXPECT_NEAR(consistency_loss(a, b, pad, Reduction::kMean).item<double>(), expected / 10, 1e-12);
  EXPECT_EQ(consistency_loss(a, a).item<double>(), 0.0);
  auto ga = a.clone().requires_grad_(), gb = b.clone().requires_grad_();
  EXPECT_TRUE(testing::gradcheck([&] { return consistency_loss(ga, gb, pad); }, {ga, gb}));
}

TEST(ConsistencyLossTest, ZeroForEntriesMaskedInBothPasses) {
  const float inf = std::numeric_limits<float>::infinity();
  auto a = at::tensor({0.0f, -inf, 1.0f}).view({1, 3});
  auto b = at::tensor({0.5f, -inf, 1.0f}).view({1, 3});
  // The same distributions without the masked entry.
  auto expected = consistency_loss(at::tensor({0.0f, 1.0f}).view({1, 2}), at::tensor({0.5f, 1.0f}).view({1, 2}));
  EXPECT_NEAR(consistency_loss(a, b).item<double>(), expected.item<double>(), 1e-7);  // the masked entry adds 0
}

TEST(ConsistencyLossTest, FiniteWhenProbabilitiesUnderflow) {
  // exp(-1e4) underflows to 0 in fp32: log(probability) would be -inf and 0 · inf NaN.
  auto a = at::tensor({0.0f, -1e4f, 0.0f, 0.0f}).view({2, 2});
  auto b = at::tensor({-1e4f, 0.0f, 0.0f, 0.0f}).view({2, 2});
  auto loss = consistency_loss(a, b);
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  EXPECT_NEAR(loss.item<double>(), 1e4, 1.0);  // ½ (1 · 1e4 + 1 · 1e4) for the first position
}

TEST(ConsistencyStepTest, NormalisesOnceAndRejectsNegativeAlpha) {
  int calls = 0;
  auto pass = [&] {
    ++calls;
    PassResult r;
    r.logits = at::tensor({static_cast<double>(calls), 0.0}).view({1, 2});
    r.task_loss = at::scalar_tensor(10.0 * calls, at::kDouble);
    r.aux_loss = at::scalar_tensor(1.0, at::kDouble);
    return r;
  };
  ConsistencyStepOptions options;
  options.alpha = 5.0;
  auto step = consistency_training_step(pass, at::Tensor(), 4, options);
  EXPECT_EQ(calls, 2);
  auto cr = consistency_loss(at::tensor({1.0, 0.0}).view({1, 2}), at::tensor({2.0, 0.0}).view({1, 2})).item<double>();
  EXPECT_NEAR(step.loss.item<double>(), (10 + 20 + 5 * cr) / 4 + 2, 1e-12);  // aux is per token already
  options.alpha = -1;
  try {
    consistency_training_step(pass, at::Tensor(), 4, options);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "ConsistencyStepOptions.alpha must be >= 0, got -1");
  }
}

TEST(ConsistencyStepTest, ThorWithOneExpertIsRDrop) {
  // THOR: a one-expert stochastic MoE layer (expert dropout inside) + a vocabulary head, two passes.
  MoELayerOptions o(8, 1, 16, 1);
  o.router = "stochastic";
  o.experts.ffn.activation_dropout = 0.2;
  o.experts.ffn.output_dropout = 0.3;
  MoELayer thor(o);
  thor->to(at::kDouble);
  thor->train();
  thor->router->set_generator(at::make_generator<at::CPUGeneratorImpl>(0));  // routing off the dropout RNG
  auto head = at::randn({8, 11}, at::kDouble);
  auto x = at::randn({2, 5, 8}, at::kDouble);
  auto target = at::randint(11, {2, 5}, at::kLong);
  auto pad = at::zeros({2, 5}, at::kBool);
  pad[1][4] = true;
  auto task = [&](const at::Tensor& logits) {
    auto nll = at::nll_loss(at::log_softmax(logits, -1).view({10, 11}), target.view({10}), {}, at::Reduction::None);
    return at::where(pad.view({10}), at::zeros({}, nll.options()), nll).sum();
  };
  torch::manual_seed(42);
  auto step = consistency_training_step(
      [&] {
        auto logits = at::matmul(thor->forward(x).output, head);
        return PassResult{logits, task(logits), at::Tensor()};
      },
      pad, 9, ConsistencyStepOptions{});

  // R-Drop by hand: the same FFN twice with dropout, both CEs plus the symmetric KL, over 9 tokens.
  DenseFFN dense(DenseFFNOptions{o.experts.ffn});
  dense->to(at::kDouble);
  dense->train();
  {
    torch::NoGradGuard g;
    for (auto& p : dense->ffn->named_parameters()) p.value().copy_(thor->experts->expert(0)->named_parameters()[p.key()]);
  }
  torch::manual_seed(42);
  auto l1 = at::matmul(dense->forward(x).output, head);
  auto l2 = at::matmul(dense->forward(x).output, head);
  auto p1 = at::softmax(l1, -1), p2 = at::softmax(l2, -1);
  auto kl = 0.5 * ((p1 - p2) * (p1.log() - p2.log())).sum(-1);
  auto r_drop = (task(l1) + task(l2) + at::where(pad, at::zeros({}, kl.options()), kl).sum()) / 9;
  EXPECT_NEAR(step.loss.item<double>(), r_drop.item<double>(), 1e-12);
  EXPECT_FALSE(at::allclose(l1, l2));  // the two passes drew different dropout masks
}

}  // namespace
}  // namespace moe
