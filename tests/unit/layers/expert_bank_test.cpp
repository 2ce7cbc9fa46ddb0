// ExpertBank and FFN: parameter names by global expert id, optional biases, activations against
// their formulas, replicated init, and the segment-wise forward against per-row computation.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gradcheck.h"
#include "moe/core/error.h"
#include "moe/layers/expert_bank.h"
#include "tolerances.h"

namespace moe {
namespace {

ExpertBankOptions bank_options(int64_t d, int64_t h, int64_t E, Activation act = Activation::kRelu) {
  ExpertBankOptions o;
  o.ffn.d_model = d;
  o.ffn.hidden = h;
  o.ffn.activation = act;
  o.num_experts = E;
  return o;
}

TEST(ExpertBankTest, ParameterNamesCarryGlobalExpertIds) {
  auto o = bank_options(4, 6, 8);
  o.first_expert = 4;
  o.num_local_experts = 2;
  o.ffn.fc2_bias = false;
  ExpertBank bank(o);
  std::vector<std::string> names;
  for (const auto& p : bank->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"4.w1", "4.b1", "4.w2", "5.w1", "5.b1", "5.w2"}));
  EXPECT_THROW(bank->expert(3), Error);
  // -1 local experts = every expert from first_expert on, never an id >= E.
  auto tail = bank_options(4, 6, 8);
  tail.first_expert = 6;
  ExpertBank tail_bank(tail);
  EXPECT_EQ(tail_bank->options.num_local_experts, 2);
  EXPECT_EQ(tail_bank->named_parameters().keys().back(), "7.b2");
  auto swiglu = bank_options(4, 6, 1, Activation::kSwiGLU);
  swiglu.ffn.fc1_bias = false;
  std::vector<std::string> gated;
  for (const auto& p : ExpertBank(swiglu)->named_parameters()) gated.push_back(p.key());
  EXPECT_EQ(gated, (std::vector<std::string>{"0.w1", "0.w2", "0.b2", "0.w3"}));
}

TEST(ExpertBankTest, ActivationsMatchTheirFormulas) {
  auto x = at::randn({9, 5}, at::kDouble);
  for (auto act : {Activation::kRelu, Activation::kGelu, Activation::kSwiGLU}) {
    FFNOptions o;
    o.d_model = 5;
    o.hidden = 7;
    o.activation = act;
    FFN ffn(o);
    ffn->to(at::kDouble);
    auto pre = at::matmul(x, ffn->w1) + ffn->b1;
    at::Tensor h;
    if (act == Activation::kRelu) h = pre.clamp_min(0);
    if (act == Activation::kGelu) h = 0.5 * pre * (1 + at::erf(pre / std::sqrt(2.0)));
    if (act == Activation::kSwiGLU) h = pre * at::sigmoid(pre) * (at::matmul(x, ffn->w3) + ffn->b3);
    auto expected = at::matmul(h, ffn->w2) + ffn->b2;
    EXPECT_TRUE(testing::all_close(ffn->forward(x), expected, testing::tolerance_for(at::kDouble)))
        << to_string(act);
  }
}

TEST(ExpertBankTest, ReplicatedInitCopiesTheFirstExpert) {
  auto o = bank_options(4, 5, 3);
  o.init = ExpertInit::kReplicated;
  ExpertBank bank(o);
  EXPECT_TRUE(at::equal(bank->expert(0)->w1, bank->expert(2)->w1));
  EXPECT_TRUE(at::equal(bank->expert(0)->b2, bank->expert(1)->b2));
  ExpertBank independent(bank_options(4, 5, 3));
  EXPECT_FALSE(at::equal(independent->expert(0)->w1, independent->expert(1)->w1));
  // Replicated experts still train apart: they are separate parameters.
  EXPECT_NE(bank->expert(0)->w1.data_ptr(), bank->expert(1)->w1.data_ptr());
}

TEST(ExpertBankTest, SegmentsRunThroughTheirOwnExpert) {
  ExpertBank bank(bank_options(3, 4, 4));
  bank->to(at::kDouble);
  auto counts = at::tensor({2, 0, 3, 1}, at::kLong);
  auto packed = at::randn({6, 3}, at::kDouble).requires_grad_();
  auto out = bank->forward(packed, counts);
  std::vector<int64_t> owner{0, 0, 2, 2, 2, 3};
  for (int64_t r = 0; r < 6; ++r) {
    auto expected = bank->expert(owner[r])->forward(packed.narrow(0, r, 1));
    EXPECT_TRUE(testing::all_close(out.narrow(0, r, 1), expected, testing::tolerance_for(at::kDouble))) << r;
  }
  auto e2 = bank->expert(2);
  EXPECT_TRUE(testing::gradcheck([&] { return bank->forward(packed, counts); }, {packed, e2->w1, e2->b2}));
  EXPECT_THROW(bank->forward(packed, at::tensor({2, 0, 3, 2}, at::kLong)), Error);
  EXPECT_EQ(bank->forward(packed.narrow(0, 0, 0), at::zeros({4}, at::kLong)).sizes(),
            (std::vector<int64_t>{0, 3}));
}

TEST(ExpertBankTest, DropoutPlacement) {
  FFNOptions o;
  o.d_model = 16;
  o.hidden = 32;
  o.output_dropout = 0.5;
  FFN ffn(o);
  auto x = at::randn({64, 16});
  ffn->eval();
  auto clean = ffn->forward(x);
  ffn->train();
  auto noisy = ffn->forward(x);
  // Output dropout zeroes about half the outputs and scales the rest by 2.
  auto zeros = noisy.eq(0).to(at::kFloat).mean().item<double>();
  EXPECT_GT(zeros, 0.35);
  EXPECT_LT(zeros, 0.65);
  auto kept = noisy.ne(0);
  EXPECT_TRUE(testing::all_close(noisy.masked_select(kept), clean.masked_select(kept) * 2,
                                 testing::tolerance_for(at::kFloat)));
}

TEST(ExpertBankTest, InvalidOptionsNameTheField) {
  auto o = bank_options(4, 4, 4);
  o.num_local_experts = 5;
  try {
    ExpertBank bank(o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "ExpertBankOptions.num_local_experts must be -1 (all) or in [1, 4], got 5");
  }
  EXPECT_THROW(parse_expert_init("copy"), Error);
}

}  // namespace
}  // namespace moe
