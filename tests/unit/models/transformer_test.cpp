// The encoder-decoder Transformer: attention against a per-head float64 loop reference, gradients,
// masks (padding invariance, causality), incremental decoding == teacher forcing, placement rules,
// the SMoE slot wiring, parameter counts and option errors.
#include "moe/models/transformer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "errors.h"
#include "gradcheck.h"
#include "moe/layers/attention.h"
#include "tolerances.h"

namespace moe {
namespace {

using moe::testing::all_close;
using moe::testing::error_of;
using moe::testing::tolerance_for;

TransformerOptions tiny_options(const std::string& variant = "dense", bool pre_norm = true) {
  TransformerOptions o;
  o.vocab_size = 37;
  o.d_model = 16;
  o.heads = 4;
  o.encoder_layers = 2;
  o.decoder_layers = 3;
  o.ffn_hidden = 24;
  o.dropout = 0.1;
  o.pre_norm = pre_norm;
  o.max_positions = 64;
  o.moe.variant = variant;
  o.moe.num_experts = 4;
  o.moe.every = 1;
  o.moe.strata = "2,2";
  return o;
}

// Per-head loops in float64: softmax(q k^T / sqrt(dh) + masks) v, then the output projection.
at::Tensor attention_reference(MultiheadAttentionImpl& attn, const at::Tensor& q_in, const at::Tensor& kv_in,
                               const at::Tensor& key_padding, bool causal) {
  const int64_t N = q_in.size(0), Tq = q_in.size(1), Tk = kv_in.size(1), d = attn.options.d_model;
  const int64_t H = attn.options.heads, dh = d / H;
  auto lin = [](torch::nn::Linear& l, const at::Tensor& x) {
    return at::matmul(x.to(at::kDouble), l->weight.to(at::kDouble).t()) + l->bias.to(at::kDouble);
  };
  auto q = lin(attn.q_proj, q_in), k = lin(attn.k_proj, kv_in), v = lin(attn.v_proj, kv_in);
  auto out = at::zeros({N, Tq, d}, at::kDouble);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Tq; ++i) {
        std::vector<double> s(Tk);
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < Tk; ++j) {
          const bool masked = (key_padding.defined() && key_padding[n][j].item<bool>()) || (causal && j > i);
          double dot = 0;
          for (int64_t c = 0; c < dh; ++c)
            dot += q[n][i][h * dh + c].item<double>() * k[n][j][h * dh + c].item<double>();
          s[j] = masked ? -std::numeric_limits<double>::infinity() : dot / std::sqrt(static_cast<double>(dh));
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (auto& x : s) z += (x = std::exp(x - mx));
        for (int64_t c = 0; c < dh; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < Tk; ++j) acc += s[j] / z * v[n][j][h * dh + c].item<double>();
          out[n][i][h * dh + c] = acc;
        }
      }
  return lin(attn.out_proj, out);
}

TEST(AttentionTest, MatchesFloat64LoopReferenceWithMasks) {
  torch::manual_seed(3);
  MultiheadAttention attn(AttentionOptions(8, 2));
  attn->eval();
  auto q = at::randn({2, 3, 8}), kv = at::randn({2, 5, 8});
  auto pad = at::zeros({2, 5}, at::kBool);
  pad[1][4] = true;
  pad[1][3] = true;
  EXPECT_TRUE(all_close(attn(q, kv, pad), attention_reference(*attn, q, kv, pad, false), tolerance_for(at::kFloat)));
  auto x = at::randn({2, 4, 8});
  EXPECT_TRUE(
      all_close(attn(x, x, at::Tensor(), true), attention_reference(*attn, x, x, {}, true), tolerance_for(at::kFloat)));
}

TEST(AttentionTest, GradcheckFloat64) {
  torch::manual_seed(4);
  MultiheadAttention attn(AttentionOptions(4, 2));
  attn->to(at::kDouble);
  auto x = at::randn({2, 3, 4}, at::kDouble).requires_grad_(true);
  auto pad = at::zeros({2, 3}, at::kBool);
  pad[0][2] = true;
  EXPECT_TRUE(moe::testing::gradcheck([&] { return attn(x, x, pad, true); },
                                      {x, attn->q_proj->weight, attn->k_proj->weight, attn->out_proj->bias}));
}

TEST(AttentionTest, CachedSelfAttentionEqualsFullCausal) {
  torch::manual_seed(5);
  MultiheadAttention attn(AttentionOptions(8, 4));
  attn->eval();
  auto x = at::randn({3, 5, 8});
  auto full = attn(x, x, at::Tensor(), true);
  KVCache cache;
  for (int64_t t = 0; t < 5; ++t) {
    auto step = x.narrow(1, t, 1);
    EXPECT_TRUE(
        all_close(attn(step, step, at::Tensor(), true, &cache), full.narrow(1, t, 1), tolerance_for(at::kFloat)));
  }
  EXPECT_EQ(cache.length(), 5);
}

TEST(TransformerTest, SinusoidalPositionsHandValues) {
  auto pe = sinusoidal_positions(0, 3, 4);  // half = 2: frequencies 1 and 1/10000
  EXPECT_NEAR(pe[0][0].item<double>(), 0.0, 1e-7);
  EXPECT_NEAR(pe[0][2].item<double>(), 1.0, 1e-7);
  EXPECT_NEAR(pe[2][0].item<double>(), std::sin(2.0), 1e-6);
  EXPECT_NEAR(pe[2][1].item<double>(), std::sin(2.0 / 10000.0), 1e-7);
  EXPECT_NEAR(pe[2][3].item<double>(), std::cos(2.0 / 10000.0), 1e-7);
  EXPECT_TRUE(all_close(sinusoidal_positions(2, 1, 4), pe.narrow(0, 2, 1), tolerance_for(at::kFloat)));
}

class IncrementalDecodingTest : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(IncrementalDecodingTest, StepwiseEqualsTeacherForced) {
  const auto& [variant, pre_norm] = GetParam();
  torch::manual_seed(7);
  auto options = tiny_options(variant, pre_norm);
  options.moe.router.set("sample_in_eval", false);     // SMoE samples its second expert in evaluation otherwise
  options.moe.router.set("eval_token_fraction", 1.0);  // no capacity drops: a step and a whole sequence route alike
  TransformerModel model(options);
  model->eval();
  auto source = at::randint(4, 37, {3, 6}, at::kLong);
  source[2][5] = 0;  // padding
  source[2][4] = 0;
  auto target = at::randint(4, 37, {3, 5}, at::kLong);
  torch::NoGradGuard no_grad;
  auto enc = model->encode(source);
  auto full = at::log_softmax(model->decode(target, enc), -1);
  auto state = model->start_decoding(enc);
  for (int64_t t = 0; t < 5; ++t) {
    auto lp = model->decode_step(state, target.select(1, t));
    EXPECT_TRUE(all_close(lp, full.select(1, t), {2e-5, 1e-5})) << variant << " step " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, IncrementalDecodingTest,
                         ::testing::Values(std::make_tuple("dense", true), std::make_tuple("dense", false),
                                           std::make_tuple("gshard", true), std::make_tuple("xmoe", false),
                                           std::make_tuple("smoe", true), std::make_tuple("switch", false)),
                         [](const auto& p) {
                           return std::get<0>(p.param) + (std::get<1>(p.param) ? "_preLN" : "_postLN");
                         });

TEST(TransformerTest, PaddingDoesNotChangeRealPositions) {
  torch::manual_seed(8);
  TransformerModel model(tiny_options("dense"));
  model->eval();
  torch::NoGradGuard no_grad;
  auto src = at::tensor({5L, 9L, 11L, 3L}).view({1, 4});
  auto tgt = at::tensor({2L, 7L, 8L}).view({1, 3});
  auto alone = model->decode(tgt, model->encode(src));
  auto src_padded = at::cat({src, at::zeros({1, 3}, at::kLong)}, 1);
  auto tgt_padded = at::cat({tgt, at::zeros({1, 2}, at::kLong)}, 1);
  auto padded = model->decode(tgt_padded, model->encode(src_padded));
  EXPECT_TRUE(all_close(padded.narrow(1, 0, 3), alone, tolerance_for(at::kFloat)));
  // Batched with a longer sentence: the same result.
  auto other = at::randint(4, 37, {1, 7}, at::kLong);
  auto batch_src = at::cat({src_padded, other}, 0);
  auto batch_tgt = at::cat({tgt_padded, at::randint(4, 37, {1, 5}, at::kLong)}, 0);
  auto batched = model->decode(batch_tgt, model->encode(batch_src));
  EXPECT_TRUE(all_close(batched.narrow(0, 0, 1).narrow(1, 0, 3), alone, tolerance_for(at::kFloat)));
}

TEST(TransformerTest, DecoderIsCausal) {
  torch::manual_seed(9);
  TransformerModel model(tiny_options("dense", false));
  model->eval();
  torch::NoGradGuard no_grad;
  auto src = at::randint(4, 37, {2, 5}, at::kLong);
  auto tgt = at::randint(4, 37, {2, 6}, at::kLong);
  auto enc = model->encode(src);
  auto a = model->decode(tgt, enc);
  auto tgt2 = tgt.clone();
  tgt2.select(1, 4).fill_(5);
  auto b = model->decode(tgt2, enc);
  EXPECT_TRUE(all_close(b.narrow(1, 0, 4), a.narrow(1, 0, 4), tolerance_for(at::kFloat)));
  EXPECT_GT((b.narrow(1, 4, 2) - a.narrow(1, 4, 2)).abs().max().item<double>(), 1e-4);
}

TEST(TransformerTest, PlacementRulesOfThePapers) {
  auto o = tiny_options("gshard");
  o.encoder_layers = o.decoder_layers = 6;
  o.moe.every = 2;
  o.moe.index_base = 1;  // SMoE / XMoE: 1-based even layers 2, 4, 6
  TransformerModel smoe_like(o);
  EXPECT_EQ(smoe_like->moe_layer_names(),
            (std::vector<std::string>{"encoder.1", "encoder.3", "encoder.5", "decoder.1", "decoder.3", "decoder.5"}));
  o.moe.index_base = 0;  // THOR: 0-based even layers 0, 2, 4
  o.moe.placement = "decoder";
  TransformerModel thor_like(o);
  EXPECT_EQ(thor_like->moe_layer_names(), (std::vector<std::string>{"decoder.0", "decoder.2", "decoder.4"}));
  o.moe.index_base = 1;
  o.moe.placement = "encoder";  // XMoE MT: encoder only
  TransformerModel xmoe_like(o);
  EXPECT_EQ(xmoe_like->moe_layer_names(), (std::vector<std::string>{"encoder.1", "encoder.3", "encoder.5"}));
  // The slots hold what the names say.
  EXPECT_NE(dynamic_cast<MoELayerImpl*>(xmoe_like->encoder_layers[1]->as<TransformerEncoderLayer>()->ffn.get()),
            nullptr);
  EXPECT_NE(dynamic_cast<DenseFFNImpl*>(xmoe_like->encoder_layers[0]->as<TransformerEncoderLayer>()->ffn.get()),
            nullptr);
  EXPECT_NE(dynamic_cast<DenseFFNImpl*>(xmoe_like->decoder_layers[1]->as<TransformerDecoderLayer>()->ffn.get()),
            nullptr);
}

TEST(TransformerTest, ForwardReportsStatsAndCombinesAuxLosses) {
  torch::manual_seed(10);
  auto o = tiny_options("smoe");
  TransformerModel model(o);
  auto src = at::randint(4, 37, {2, 5}, at::kLong), tgt = at::randint(4, 37, {2, 4}, at::kLong);
  auto out = model->forward(src, tgt);
  ASSERT_EQ(out.moe.size(), 5u);  // every layer (every = 1): 2 encoder + 3 decoder
  EXPECT_EQ(out.logits.sizes(), (at::IntArrayRef{2, 4, 37}));
  double sum = 0;
  for (const auto& s : out.moe) sum += s.stats.total_aux_loss().item<double>();
  EXPECT_NEAR(out.aux_loss.item<double>(), sum / 5.0, 1e-6);  // SMoE: mean over layers
  model->options.moe.aux_combine = "sum";
  EXPECT_NEAR(model->combine_aux_losses(out.moe).item<double>(), sum, 1e-6);
  // Gradients reach the gates through the aux loss and the experts through the task loss.
  (out.logits.logsumexp(-1).mean() + out.aux_loss).backward();
  for (const auto& p : model->named_parameters()) {
    if (p.key().find("gate") != std::string::npos || p.key().find("experts.0.w1") != std::string::npos) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
    }
  }
}

TEST(TransformerTest, ParameterCountsByHand) {
  auto o = tiny_options("dense");
  o.encoder_layers = 1;
  o.decoder_layers = 1;
  TransformerModel dense(o);
  const int64_t d = 16, h = 24, V = 37;
  const int64_t attn = 4 * (d * d + d), ln = 2 * d, ffn = d * h + h + h * d + d;
  const int64_t expected = V * d + (attn + 2 * ln + ffn) + (2 * attn + 3 * ln + ffn) + 2 * ln;
  EXPECT_EQ(dense->count_parameters().total, expected);
  EXPECT_DOUBLE_EQ(dense->count_parameters().active, static_cast<double>(expected));
  o.moe.variant = "gshard";
  o.moe.every = 1;
  TransformerModel moe_model(o);
  auto c = moe_model->count_parameters();
  const int64_t E = 4, router = d * E;
  EXPECT_EQ(c.total, expected - 2 * ffn + 2 * (E * ffn + router));
  EXPECT_EQ(c.expert, 2 * E * ffn);
  // Top-2: two experts' parameters of each MoE layer are active (plus its router).
  EXPECT_DOUBLE_EQ(c.active, static_cast<double>(expected - 2 * ffn + 2 * (2 * ffn + router)));
  auto measured = moe_model->count_parameters({{"encoder.0", 1.0}, {"decoder.0", 1.0}});
  EXPECT_DOUBLE_EQ(measured.active, static_cast<double>(expected - 2 * ffn + 2 * (ffn + router)));
  EXPECT_GT(c.forward_flops_per_token, measured.forward_flops_per_token);
  // Expert FLOPs: 2 per weight-matrix entry (d·h + h·d) of each active expert, over both MoE slots.
  EXPECT_DOUBLE_EQ(dense->count_parameters().expert_flops_per_token, 0.0);
  EXPECT_DOUBLE_EQ(c.expert_flops_per_token, 2.0 * 2 * 2 * (2 * d * h));
  EXPECT_DOUBLE_EQ(measured.expert_flops_per_token, 2.0 * 2 * 1 * (2 * d * h));
}

TEST(TransformerTest, InvalidOptionsNameTheField) {
  auto o = tiny_options();
  o.heads = 5;
  EXPECT_NE(error_of([&] { TransformerModel m(o); }).find("TransformerOptions.heads must be >= 1 and divide"),
            std::string::npos);
  o = tiny_options("nonsense");
  EXPECT_NE(error_of([&] { TransformerModel m(o); }).find("TransformerOptions.moe.variant='nonsense'"),
            std::string::npos);
  o = tiny_options("smoe");
  o.moe.strata = "3,3";
  EXPECT_NE(error_of([&] { TransformerModel m(o); }).find("sums to 6 but TransformerOptions.moe.num_experts=4"),
            std::string::npos);
  o = tiny_options("gshard");
  o.moe.placement = "middle";
  EXPECT_NE(error_of([&] { TransformerModel m(o); }).find("placement"), std::string::npos);
  TransformerModel m(tiny_options());
  EXPECT_NE(error_of([&] { m->encode(at::zeros({1, 65}, at::kLong)); }).find("max_positions=64"), std::string::npos);
}

}  // namespace
}  // namespace moe
