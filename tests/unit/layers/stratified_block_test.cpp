// SMoE's StratifiedMoEBlock: the one-stratum identity (GShard top-2 + exit LayerNorm), an
// independent dense float64 reference of the multi-pass state machine, gradients, statistics and
// option errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dense_reference.h"
#include "gradcheck.h"
#include "moe/core/error.h"
#include "moe/layers/stratified_moe_block.h"
#include "tolerances.h"

namespace moe {
namespace {

StratifiedMoEBlock greedy_block(std::vector<int64_t> strata, int64_t d = 6, int64_t h = 5) {
  StratifiedMoEBlockOptions o(d, std::move(strata), h);
  o.router_options.second_expert_policy = SecondExpertPolicy::kGreedy;
  o.router_options.sample_in_eval = false;
  StratifiedMoEBlock block(o);
  block->to(at::kDouble);
  {
    torch::NoGradGuard g;  // non-trivial LayerNorm affine parameters
    for (auto& p : block->named_parameters()) {
      if (p.key().find("norm") != std::string::npos) p.value().uniform_(0.5, 1.5);
    }
  }
  return block;
}

at::Tensor router_weight(const std::shared_ptr<RouterImpl>& r) { return r->named_parameters()["weight"]; }

// A float64 greedy GShard top-2 MoELayer with the gate and experts of a one-stratum block.
MoELayer greedy_gshard_sharing_weights(StratifiedMoEBlockImpl& block) {
  MoELayerOptions o(block.options.d_model, block.options.num_experts(), block.options.experts.ffn.hidden, 2);
  o.router_options.second_expert_policy = SecondExpertPolicy::kGreedy;
  MoELayer layer(o);
  layer->to(at::kDouble);
  torch::NoGradGuard g;
  router_weight(layer->router).copy_(router_weight(block.gates[0]));
  for (auto& p : layer->experts->named_parameters()) p.value().copy_(block.experts->named_parameters()[p.key()]);
  return layer;
}

TEST(StratifiedMoEBlockTest, OneStratumEqualsGShardTopTwoPlusExitLayerNorm) {
  torch::manual_seed(1);
  auto block = greedy_block({4});
  auto layer = greedy_gshard_sharing_weights(*block);
  auto h = at::randn({3, 7, 6}, at::kDouble);
  auto out = block->forward(h);
  auto exit_norm = block->stratum_norms[0]->as<torch::nn::LayerNorm>();
  auto expected = exit_norm->forward(h + layer->forward(block->input_norm->forward(h)).output);
  EXPECT_TRUE(testing::all_close(out.output, expected, testing::tolerance_for(at::kDouble)));
  EXPECT_NEAR(out.stats.passes_per_token.item<double>(), 1.0, 1e-12);
  EXPECT_TRUE(block->includes_residual());
}

// The state machine written densely: every expert on every active token, one-hot capacity slots.
struct Reference {
  at::Tensor output;
  at::Tensor passes;
  double balance = 0;
};

Reference dense_stratified(StratifiedMoEBlockImpl& block, const at::Tensor& x, std::vector<bool> padding = {}) {
  const auto& strata = block.options.strata;
  const int64_t L = strata.size(), E = block.options.num_experts();
  std::vector<int64_t> first{0}, stratum_of;
  for (int64_t s = 0; s < L; ++s) {
    first.push_back(first.back() + strata[s]);
    for (int64_t j = 0; j < strata[s]; ++j) stratum_of.push_back(s);
  }
  auto h = x.clone();
  const int64_t T = h.size(0);
  if (padding.empty()) padding.assign(static_cast<size_t>(T), false);
  std::vector<int64_t> state(T, 0);
  auto passes = at::zeros({T}, at::kDouble);
  double balance = 0;
  int64_t pass_count = 0;
  int64_t s = 0;
  while (s < L) {
    std::vector<int64_t> active_v;
    for (int64_t t = 0; t < T; ++t) {
      if (state[t] == s) active_v.push_back(t);
    }
    auto active = at::tensor(active_v, at::kLong);
    auto ha = h.index_select(0, active);
    auto in =
        s == 0 ? block.input_norm->forward(ha) : block.stratum_norms[s - 1]->as<torch::nn::LayerNorm>()->forward(ha);
    const int64_t visible = E - first[s], k = std::min<int64_t>(2, visible), Ta = active.size(0);
    auto probs = at::softmax(at::matmul(in, router_weight(block.gates[s]).t()), 1);  // [Ta, visible]
    auto local = std::get<1>(probs.sort(/*stable=*/true, 1, true)).narrow(1, 0, k).contiguous();
    auto weight = probs.gather(1, local);
    const int64_t capacity = std::min<int64_t>(Ta, k * ((Ta + visible - 1) / visible));  // padding rows count
    auto global = local + first[s];
    std::vector<bool> pad_active;
    for (int64_t t : active_v) pad_active.push_back(padding[static_cast<size_t>(t)]);
    global = global.masked_fill(testing::bool_mask(pad_active).unsqueeze(1), -1);  // padding: no slot, no expert
    auto routing = testing::one_hot_routing(global, weight, E, capacity, WeightNormalization::kKept);
    auto gate = routing.combine_weights.sum(2);  // [Ta, E]
    auto y = at::zeros_like(in);
    for (int64_t e = first[s]; e < E; ++e) {
      auto f = block.experts->expert(e);
      y = y + gate.select(1, e).unsqueeze(1) * (at::matmul(at::relu(at::matmul(in, f->w1) + f->b1), f->w2) + f->b2);
    }
    h = h.index_copy(0, active, ha + y);
    // E_s · Σ_e f_e · P_e by hand: P over all Ta rows, f counts the real rows' top-1 and divides by Ta.
    double pass_balance = 0;
    for (int64_t e = 0; e < visible; ++e) {
      double count = 0;
      for (int64_t i = 0; i < Ta; ++i)
        count += (!pad_active[static_cast<size_t>(i)] && local[i][0].item<int64_t>() == e);
      pass_balance += probs.select(1, e).mean().item<double>() * count / static_cast<double>(Ta);
    }
    balance += pass_balance * static_cast<double>(visible);
    ++pass_count;
    for (int64_t i = 0; i < Ta; ++i) {
      const int64_t t = active_v[i];
      state[t] = stratum_of[local[i][0].item<int64_t>() + first[s]] + 1;  // padding too: by its top-1
      passes[t] += padding[static_cast<size_t>(t)] ? 0 : 1;
    }
    s = *std::min_element(state.begin(), state.end());
  }
  return {block.stratum_norms[L - 1]->as<torch::nn::LayerNorm>()->forward(h), passes, balance / pass_count};
}

TEST(StratifiedMoEBlockTest, MatchesDenseStateMachineReference) {
  for (auto strata : std::vector<std::vector<int64_t>>{{2, 2, 2, 2}, {4, 12}, {1, 3, 1}}) {
    torch::manual_seed(5);
    auto block = greedy_block(strata);
    auto x = at::randn({40, 6}, at::kDouble);
    auto out = block->forward(x);
    auto ref = dense_stratified(*block, x);
    EXPECT_TRUE(testing::all_close(out.output, ref.output, testing::tolerance_for(at::kDouble)));
    EXPECT_NEAR(out.stats.passes_per_token.item<double>(), ref.passes.mean().item<double>(), 1e-6);  // fp32 stat
    EXPECT_GE(ref.passes.min().item<double>(), 1.0);
    EXPECT_LE(ref.passes.max().item<double>(), static_cast<double>(strata.size()));
    EXPECT_NEAR(out.stats.aux_losses.at("balance").value.item<double>(), ref.balance, 1e-12);  // mean over passes
  }
}

TEST(StratifiedMoEBlockTest, PaddedBatchesMatchTheReference) {
  // Padding rows go through the passes by their top-1 like the official code's, but get no slot and
  // no expert in any pass, and stay out of the balance loss's counts; passes count real tokens.
  for (auto strata : std::vector<std::vector<int64_t>>{{2, 2, 2, 2}, {4, 12}}) {
    torch::manual_seed(7);
    auto block = greedy_block(strata);
    auto x = at::randn({40, 6}, at::kDouble);
    std::vector<bool> padding(40, false);
    for (int t = 0; t < 40; t += 3) padding[static_cast<size_t>(t)] = true;
    auto out = block->forward(x, at::Tensor(), testing::bool_mask(padding));
    auto ref = dense_stratified(*block, x, padding);
    EXPECT_TRUE(testing::all_close(out.output, ref.output, testing::tolerance_for(at::kDouble)));
    EXPECT_NEAR(out.stats.aux_losses.at("balance").value.item<double>(), ref.balance, 1e-12);
    const double real = 40 - 14;
    EXPECT_NEAR(out.stats.passes_per_token.item<double>(), ref.passes.sum().item<double>() / real, 1e-6);
    EXPECT_EQ(out.stats.padding.item<int64_t>(), 14);
  }
}

TEST(StratifiedMoEBlockTest, GradientsByFiniteDifferences) {
  torch::manual_seed(6);
  auto block = greedy_block({2, 2}, 4, 3);
  auto x = at::randn({6, 4}, at::kDouble).requires_grad_();
  std::vector<at::Tensor> leaves{x,
                                 router_weight(block->gates[0]),
                                 router_weight(block->gates[1]),
                                 block->experts->expert(0)->w1,
                                 block->experts->expert(3)->w2,
                                 block->named_parameters()["stratum_norms.0.weight"]};
  EXPECT_TRUE(testing::gradcheck([&] { return block->forward(x).output; }, leaves));
}

TEST(StratifiedMoEBlockTest, WithoutLayerNormsItIsTheResidualPlusTheMoE) {
  torch::manual_seed(2);
  StratifiedMoEBlockOptions o(6, {4}, 5);
  o.router_options.second_expert_policy = SecondExpertPolicy::kGreedy;
  o.router_options.sample_in_eval = false;
  o.input_layernorm = false;
  o.stratum_layernorm = false;  // official --hmoe-layernorm 0: no per-stratum or exit LayerNorm
  StratifiedMoEBlock block(o);
  block->to(at::kDouble);
  auto layer = greedy_gshard_sharing_weights(*block);
  auto h = at::randn({20, 6}, at::kDouble);
  EXPECT_TRUE(
      testing::all_close(block->forward(h).output, h + layer->forward(h).output, testing::tolerance_for(at::kDouble)));
  EXPECT_TRUE(block->named_parameters().find("stratum_norms.0.weight") == nullptr);
}

TEST(StratifiedMoEBlockTest, EvaluationDropsNothing) {
  torch::manual_seed(3);
  StratifiedMoEBlock block(StratifiedMoEBlockOptions(8, {2, 6}, 8));  // eval token fraction 1.0
  {
    torch::NoGradGuard g;
    router_weight(block->gates[0]).zero_();
    router_weight(block->gates[0])[0].fill_(1.0);  // every token wants expert 0 first
  }
  block->eval();
  auto stats = block->forward(at::randn({64, 8}).abs()).stats;
  EXPECT_EQ(stats.dropped_fraction.item<double>(), 0.0);
  block->train();  // training capacity 2·ceil(64/8) = 16 < 64 requests for expert 0: drops
  EXPECT_GT(block->forward(at::randn({64, 8}).abs()).stats.dropped_fraction.item<double>(), 0.0);
}

TEST(StratifiedMoEBlockTest, GumbelSecondExpertAndZeroTokens) {
  StratifiedMoEBlock block(StratifiedMoEBlockOptions(8, {2, 6}, 8));
  block->eval();  // the official code samples the second expert at inference too
  torch::manual_seed(1);
  auto x = at::randn({64, 8});
  auto a = block->forward(x).output;
  auto b = block->forward(x).output;
  EXPECT_FALSE(at::equal(a, b));
  auto empty = block->forward(at::zeros({0, 8}));
  EXPECT_EQ(empty.output.size(0), 0);
}

TEST(StratifiedMoEBlockTest, InvalidStrataNameTheProblem) {
  auto error_of = [](const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(parse_strata("4,12"), (std::vector<int64_t>{4, 12}));
  EXPECT_EQ(parse_strata("2, 2,2,2"), (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(error_of([] { parse_strata(""); }), "strata must name at least one stratum such as \"4,12\", got \"\"");
  EXPECT_EQ(error_of([] { parse_strata("4,,12"); }),
            "strata must be a comma-separated list of positive expert counts such as \"4,12\", got \"4,,12\"");
  EXPECT_EQ(error_of([] { parse_strata("4,0"); }),
            "strata must be a comma-separated list of positive expert counts such as \"4,12\", got \"4,0\"");
  EXPECT_EQ(error_of([] { StratifiedMoEBlock(StratifiedMoEBlockOptions(8, {}, 8)); }),
            "StratifiedMoEBlockOptions.strata must not be empty (e.g. {4, 12})");
  EXPECT_EQ(error_of([] {
              StratifiedMoEBlockOptions o(8, {4, 12}, 8);
              o.experts.num_experts = 15;
              StratifiedMoEBlock{o};
            }),
            "StratifiedMoEBlockOptions.strata sum to 16 but experts.num_experts is 15");
}

}  // namespace
}  // namespace moe
