// A short training run per MoE variant on a fixed synthetic task: 100 Adam steps must lower the
// loss. The task: inputs drawn around 4 cluster centres, each cluster with its own linear map to 8
// classes, so experts can specialise. Also checks that the stratified block takes every router.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>

#include "moe/layers/presets.h"
#include "moe/train/consistency.h"

namespace moe {
namespace {

constexpr int64_t kD = 16, kClasses = 8, kClusters = 4, kBatch = 128;

struct Task {
  at::Tensor centers, maps;
  explicit Task(uint64_t seed) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    centers = at::randn({kClusters, kD}, gen) * 2;
    maps = at::randn({kClusters, kD, kClasses}, gen);
  }
  // x [B, 8, d] (8 positions), targets [B, 8], token ids [B, 8] (the cluster id plus noise)
  std::tuple<at::Tensor, at::Tensor, at::Tensor> batch(at::Generator& gen) const {
    auto cluster = at::randint(kClusters, {kBatch}, gen);
    auto x = centers.index_select(0, cluster) + at::randn({kBatch, kD}, gen);
    auto target = at::bmm(x.unsqueeze(1), maps.index_select(0, cluster)).squeeze(1).argmax(1);
    auto ids = cluster * 10 + at::randint(2, {kBatch}, gen);
    return {x.view({kBatch / 8, 8, kD}), target.view({kBatch / 8, 8}), ids.view({kBatch / 8, 8})};
  }
};

struct Model : torch::nn::Module {
  std::shared_ptr<FeedForwardBlockImpl> block;
  torch::nn::Linear head{nullptr};
  Model(std::shared_ptr<FeedForwardBlockImpl> b) : block(register_module("block", std::move(b))) {
    head = register_module("head", torch::nn::Linear(kD, kClasses));
  }
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& ids) {
    auto out = block->forward(x, ids);
    auto h = block->includes_residual() ? out.output : x + out.output;
    return {head->forward(h), out.stats.total_aux_loss()};
  }
};

double train(std::shared_ptr<FeedForwardBlockImpl> block, bool thor_consistency, double* first_loss) {
  torch::manual_seed(0);
  Model model(std::move(block));
  model.train();
  torch::optim::Adam optimizer(model.parameters(), torch::optim::AdamOptions(3e-3));
  Task task(1);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  double first = 0, last = 0;
  for (int step = 0; step < 100; ++step) {
    auto [x, target, ids] = task.batch(gen);
    auto ce = [&](const at::Tensor& logits) {
      return at::cross_entropy_loss(logits.reshape({-1, kClasses}), target.reshape({-1}), {}, at::Reduction::Sum);
    };
    at::Tensor loss, task_loss;
    if (thor_consistency) {
      auto step_out = consistency_training_step(
          [&] {
            auto [logits, aux] = model.forward(x, ids);
            return PassResult{logits, ce(logits), aux};
          },
          at::Tensor(), kBatch);
      loss = step_out.loss;
      task_loss = step_out.task_loss_a / kBatch;
    } else {
      auto [logits, aux] = model.forward(x, ids);
      task_loss = ce(logits) / kBatch;
      loss = task_loss + aux;
    }
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    const double value = task_loss.item<double>();
    if (step < 10) first += value / 10;
    if (step >= 90) last += value / 10;
  }
  *first_loss = first;
  return last;
}

struct Variant {
  const char* name;
  std::function<std::shared_ptr<FeedForwardBlockImpl>()> make;
  bool consistency;
};
std::ostream& operator<<(std::ostream& os, const Variant& v) { return os << v.name; }

class VariantTrainingTest : public ::testing::TestWithParam<Variant> {};

TEST_P(VariantTrainingTest, LossFallsOver100Steps) {
  double first = 0;
  const double last = train(GetParam().make(), GetParam().consistency, &first);
  EXPECT_LT(last, 0.7 * first) << GetParam().name << ": " << first << " -> " << last;
}

MoELayerOptions with_router(const std::string& router, int64_t k) {
  MoELayerOptions o(kD, 4, 32, k);
  o.router = router;
  o.router_options.capacity.capacity_factor = 1.5;
  return o;
}

INSTANTIATE_TEST_SUITE_P(
    Variants, VariantTrainingTest,
    ::testing::Values(
        Variant{"switch", [] { return std::make_shared<MoELayerImpl>(with_router("topk", 1)); }, false},
        Variant{"gshard", [] { return std::make_shared<MoELayerImpl>(with_router("topk", 2)); }, false},
        Variant{"xmoe", [] { return std::make_shared<MoELayerImpl>(xmoe_layer_options(kD, 16, 8)); }, false},
        Variant{"thor", [] { return std::make_shared<MoELayerImpl>(thor_layer_options(kD, 4, 32)); }, true},
        Variant{"smoe",
                [] {
                  return std::make_shared<StratifiedMoEBlockImpl>(smoe_block_options(kD, {2, 2}, 32));
                },
                false},
        Variant{"expert_choice", [] { return std::make_shared<MoELayerImpl>(with_router("expert_choice", 2)); }, false},
        Variant{"hash", [] { return std::make_shared<MoELayerImpl>(with_router("hash", 1)); }, false}),
    [](const auto& test_info) { return std::string(test_info.param.name); });

class StratifiedAnyRouterTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StratifiedAnyRouterTest, RunsAndPropagatesGradients) {
  torch::manual_seed(3);
  auto o = smoe_block_options(kD, {2, 2, 4}, 16);
  o.router = GetParam();
  o.router_options.hash_by = "position";
  StratifiedMoEBlock block(o);
  auto x = at::randn({4, 6, kD}).requires_grad_();
  auto out = block->forward(x);
  (out.output.pow(2).sum() + out.stats.total_aux_loss()).backward();
  EXPECT_TRUE(at::isfinite(out.output).all().item<bool>());
  EXPECT_TRUE(at::isfinite(x.grad()).all().item<bool>());
  EXPECT_GE(out.stats.passes_per_token.item<double>(), 1.0);
  EXPECT_LE(out.stats.passes_per_token.item<double>(), 3.0);
}

// Every registered router, as the registry lists them: a new router is tested here without an edit.
INSTANTIATE_TEST_SUITE_P(Routers, StratifiedAnyRouterTest, ::testing::ValuesIn(known_routers()),
                         [](const auto& test_info) { return test_info.param; });

}  // namespace
}  // namespace moe
