// ExpertBank and FFN: parameter names by global expert id, optional biases, activations against
// their formulas, replicated init, and the segment-wise forward against per-row computation.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
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

// Each expert's parameters are slices of one stack per kind of matrix, the grouped path runs from
// that stack as it is, and only new storage (Module::to) makes a forward rebuild it.
TEST(ExpertBankTest, ExpertParametersAreSlicesOfOneStackPerKind) {
  auto o = bank_options(3, 5, 4, Activation::kSwiGLU);
  o.first_expert = 1;
  o.num_local_experts = 3;
  ExpertBank bank(o);
  EXPECT_TRUE(bank->stacks_intact());
  EXPECT_EQ(bank->restacks(), 1);
  for (const std::string kind : {"w1", "b1", "w2", "b2", "w3", "b3"}) {
    auto stack = bank->stacked(kind);
    EXPECT_FALSE(stack.requires_grad()) << kind;
    EXPECT_EQ(stack.size(0), 3) << kind;
    for (int64_t e = 0; e < 3; ++e) {
      auto p = bank->named_parameters()[std::to_string(e + 1) + "." + kind];
      EXPECT_TRUE(p.requires_grad() && p.is_leaf()) << kind;
      EXPECT_EQ(p.data_ptr(), stack[e].data_ptr()) << kind << " expert " << e + 1;
    }
  }
  EXPECT_EQ(bank->stacked("w1").sizes(), (std::vector<int64_t>{3, 3, 5}));
  EXPECT_EQ(bank->stacked("w2").sizes(), (std::vector<int64_t>{3, 5, 3}));
  try {
    bank->stacked("w4");
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'w4' (this FFN has w1, b1, w2, b2, w3, b3)"), std::string::npos) << e.what();
  }
  // Independent draws per expert survive the stacking.
  EXPECT_FALSE(at::equal(bank->stacked("w1")[0], bank->stacked("w1")[1]));
}

TEST(ExpertBankTest, GroupedPathFromTheStackMatchesEachExpertInFloat64) {
  for (auto backend : {GroupedGemmBackend::kPerGroup, GroupedGemmBackend::kGroupedMM}) {
    for (auto act : {Activation::kRelu, Activation::kSwiGLU}) {
      auto o = bank_options(3, 4, 4, act);
      ExpertBank per_expert(o);
      per_expert->to(at::kDouble);
      o.gemm = backend;
      ExpertBank grouped(o);
      grouped->to(at::kDouble);
      {
        torch::NoGradGuard no_grad;
        auto from = per_expert->named_parameters();
        for (auto& p : grouped->named_parameters()) p.value().copy_(from[p.key()]);
      }
      const auto counts = at::tensor({2, 0, 3, 1}, at::kLong);  // an expert without rows
      auto x = at::randn({6, 3}, at::kDouble);
      auto a = x.clone().requires_grad_(), b = x.clone().requires_grad_();
      auto probe = at::randn({6, 3}, at::kDouble);
      auto ya = per_expert->forward(a, counts), yb = grouped->forward(b, counts);
      const auto what = to_string(backend) + " " + to_string(act);
      EXPECT_TRUE(testing::all_close(yb, ya, testing::tolerance_for(at::kDouble))) << what;
      (ya * probe).sum().backward();
      (yb * probe).sum().backward();
      EXPECT_TRUE(testing::all_close(b.grad(), a.grad(), testing::tolerance_for(at::kDouble))) << what;
      auto ga = per_expert->named_parameters();
      for (const auto& p : grouped->named_parameters()) {
        const auto& want = ga[p.key()].grad();
        const auto& got = p.value().grad();
        // An expert without rows gets no gradient on either path (AdamW then leaves it alone).
        ASSERT_EQ(got.defined(), want.defined()) << what << " " << p.key();
        if (!want.defined()) continue;
        if (at::equal(want, at::zeros_like(want))) {  // relu switched every unit off
          EXPECT_TRUE(at::equal(got, want)) << what << " " << p.key();
        } else {
          EXPECT_TRUE(testing::all_close(got, want, testing::tolerance_for(at::kDouble))) << what << " " << p.key();
        }
      }
      // Finite differences through the stack (the parameters are perturbed in place, in the stack).
      auto e2 = grouped->expert(2);
      EXPECT_TRUE(testing::gradcheck([&] { return grouped->forward(b, counts); }, {b, e2->w1, e2->b1, e2->w2}))
          << what;
      EXPECT_EQ(grouped->restacks(), 2) << what;  // built at construction, rebuilt once after to(kDouble)
    }
  }
}

TEST(ExpertBankTest, ForwardsUpdatesAndLoadsKeepTheStackOnlyNewStorageRebuildsIt) {
  auto o = bank_options(3, 4, 3);
  o.gemm = GroupedGemmBackend::kPerGroup;
  ExpertBank bank(o);
  const auto counts = at::tensor({2, 1, 1}, at::kLong);
  auto x = at::randn({4, 3});
  const void* storage = bank->stacked("w1").data_ptr();
  for (int step = 0; step < 3; ++step) {
    bank->forward(x, counts).sum().backward();
    torch::NoGradGuard no_grad;
    for (auto& p : bank->parameters()) p.sub_(0.1 * p.grad());  // an optimizer's in-place update
    bank->zero_grad();
  }
  {
    torch::NoGradGuard no_grad;
    bank->expert(1)->w2.copy_(at::full({4, 3}, 0.5));  // a checkpoint's copy_
  }
  EXPECT_EQ(bank->restacks(), 1);
  EXPECT_EQ(bank->stacked("w1").data_ptr(), storage);
  EXPECT_TRUE(at::equal(bank->stacked("w2")[1], at::full({4, 3}, 0.5)));
  EXPECT_TRUE(at::equal(bank->stacked("b1")[2], bank->expert(2)->b1));
  // New storage for the parameters: the next forward rebuilds the stack once, values unchanged.
  auto before = bank->forward(x, counts).detach();
  bank->to(at::kDouble);
  EXPECT_FALSE(bank->stacks_intact());
  auto after = bank->forward(x.to(at::kDouble), counts);
  EXPECT_TRUE(bank->stacks_intact());
  EXPECT_EQ(bank->restacks(), 2);
  EXPECT_EQ(bank->stacked("w1").scalar_type(), at::kDouble);
  EXPECT_TRUE(testing::all_close(after, before.to(at::kDouble), testing::tolerance_for(at::kFloat)));
  bank->forward(x.to(at::kDouble), counts);
  EXPECT_EQ(bank->restacks(), 2);
}

// Under autocast the grouped path computes in the autocast dtype, as at::linear does, and the fp32
// parameters get fp32 gradients. (CPU autocast here; the trainer uses CUDA autocast in bf16.)
TEST(ExpertBankTest, GroupedPathFollowsAutocast) {
  auto o = bank_options(16, 32, 3, Activation::kGelu);  // smooth: bf16 rounding flips no relu gate
  o.gemm = GroupedGemmBackend::kPerGroup;
  ExpertBank bank(o);
  const auto counts = at::tensor({5, 0, 7}, at::kLong);
  auto x = at::randn({12, 16});
  auto fp32 = bank->forward(x, counts);
  fp32.sum().backward();
  auto fp32_grad = bank->expert(2)->w1.grad().clone();
  bank->zero_grad();
  at::Tensor low;
  {
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::increment_nesting();
    low = bank->forward(x, counts);
    at::autocast::decrement_nesting();
    at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCPU, false);
  }
  EXPECT_EQ(low.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(testing::all_close(low.to(at::kFloat), fp32, testing::tolerance_for(at::kBFloat16)));
  low.to(at::kFloat).sum().backward();
  const auto& g = bank->expert(2)->w1.grad();
  EXPECT_EQ(g.scalar_type(), at::kFloat);
  // Relative error of the whole gradient: bf16 keeps 8 significant bits (2^-8 = 0.4 %) per operand.
  EXPECT_LT((g - fp32_grad).norm().item<double>(), 0.03 * fp32_grad.norm().item<double>());
  EXPECT_GT(fp32_grad.norm().item<double>(), 0.0);
  EXPECT_EQ(bank->restacks(), 1);
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
