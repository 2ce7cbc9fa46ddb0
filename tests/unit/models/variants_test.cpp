// The variant table: every row (built-in variants, and every registered router) builds a translation
// model whose MoE slots take their router, k and presets from the table, trains one step (finite
// loss and gradients), and counts its parameters; nothing else needs to name a variant.
#include "moe/models/variants.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "errors.h"
#include "moe/models/transformer.h"

namespace moe {
namespace {

std::vector<std::string> every_variant() {
  auto names = builtin_variant_names();
  for (const auto& r : known_routers())
    if (std::find(names.begin(), names.end(), r) == names.end()) names.push_back(r);
  return names;
}

class VariantTableTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VariantTableTest, BuildsTrainsAStepAndCountsParameters) {
  const auto name = GetParam();
  const auto spec = variant_spec(name);
  torch::manual_seed(3);
  TransformerOptions o;
  o.vocab_size = 30;
  o.d_model = 16;
  o.heads = 2;
  o.encoder_layers = o.decoder_layers = 2;
  o.ffn_hidden = 24;
  o.max_positions = 16;
  o.moe.variant = name;
  o.moe.num_experts = 4;
  o.moe.strata = "2,2";
  o.moe.router.set("hash_by", "position");
  TransformerModel model(o);
  EXPECT_EQ(model->moe_layer_names().empty(), spec.kind == SlotKind::kDense) << name;
  auto src = at::randint(4, 30, {2, 5}, at::kLong), tgt = at::randint(4, 30, {2, 4}, at::kLong);
  auto out = model->forward(src, tgt);
  auto loss = at::cross_entropy_loss(out.logits.reshape({-1, 30}), tgt.reshape({-1})) + out.aux_loss;
  loss.backward();
  EXPECT_TRUE(std::isfinite(loss.item<double>())) << name;
  for (const auto& p : model->parameters()) {
    if (p.grad().defined()) {
      EXPECT_TRUE(at::isfinite(p.grad()).all().item<bool>()) << name;
    }
  }
  const auto count = model->count_parameters();
  EXPECT_EQ(count.expert > 0, spec.kind != SlotKind::kDense) << name;
  EXPECT_LE(count.active, static_cast<double>(count.total)) << name;
  // The table's k reaches the router (fixed-k variants ignore nothing silently: see validate()).
  if (spec.kind == SlotKind::kMoELayer && spec.fixed_top_k > 0) {
    EXPECT_EQ(o.moe.resolved_router_options(16).top_k, spec.fixed_top_k) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(EveryVariant, VariantTableTest, ::testing::ValuesIn(every_variant()),
                         [](const auto& p) { return p.param; });

TEST(VariantTableTest, UnknownNamesListTheTable) {
  const auto msg = moe::testing::error_of([] { variant_spec("nonsense", "moe.variant"); });
  EXPECT_NE(msg.find("moe.variant='nonsense' is neither a built-in variant (dense, switch, gshard"), std::string::npos)
      << msg;
}

}  // namespace
}  // namespace moe
