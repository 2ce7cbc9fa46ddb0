// A router plugin, built against the installed moe package: the cosine router of
// examples/04_custom_router.cpp (Chi et al. 2022, "On the Representation Collapse of Sparse Mixture of
// Experts"; Tutel's cosine gate) as a shared library that registers itself when loaded, so the stock
// programs train and translate with it:
//   moe-train --plugin ./libmoe_cosine_router.so --config configs/tiny.toml --moe.variant cosine \
//             --moe.router.cosine_temperature 0.1
//   moe-translate --checkpoint runs/x/best.moeckpt --target de   # loads the plugin the checkpoint names
#include <moe/moe.h>
#include <torch/torch.h>

#include <cmath>

class CosineRouterImpl : public moe::RouterImpl {
 public:
  explicit CosineRouterImpl(const moe::RouterOptions& options) : moe::RouterImpl(options) {
    options_.validate();  // shared checks: d_model, E, top_k, capacity, ...
    // Router-specific knobs travel in options.extra (strings, e.g. from a config file).
    projection_dim_ = options_.extra_int("cosine_dim", 16);
    temperature_ = options_.extra_double("cosine_temperature", 0.07);
    MOE_CHECK(projection_dim_ >= 1, "RouterOptions.extra['cosine_dim'] must be >= 1, got ", projection_dim_);
    MOE_CHECK(temperature_ > 0, "RouterOptions.extra['cosine_temperature'] must be > 0, got ", temperature_);
    if (options_.normalization == moe::WeightNormalization::kAuto) {
      options_.normalization = options_.top_k == 1 ? moe::WeightNormalization::kNone : moe::WeightNormalization::kKept;
    }
    projection = register_parameter("projection", torch::randn({options_.d_model, projection_dim_}) /
                                                      std::sqrt(static_cast<double>(options_.d_model)));
    expert_embedding = register_parameter("expert_embedding", torch::randn({options_.num_experts, projection_dim_}));
  }

  at::Tensor projection;        // [d_model, cosine_dim]
  at::Tensor expert_embedding;  // [E, cosine_dim]

 protected:
  // hidden: [T, d_model] (checked by RouterImpl::route) -> RoutingPlan with expert_index/weight [T, top_k].
  moe::RoutingPlan route_impl(const at::Tensor& hidden, const moe::RoutingContext& /*context*/) override {
    auto x = torch::nn::functional::normalize(torch::matmul(hidden.to(torch::kFloat), projection),
                                              torch::nn::functional::NormalizeFuncOptions().dim(1));
    auto e = torch::nn::functional::normalize(expert_embedding, torch::nn::functional::NormalizeFuncOptions().dim(1));
    auto logits = torch::matmul(x, e.t()) / temperature_;  // [T, E]
    auto probs = torch::softmax(logits, 1);
    auto [weight, index] = probs.topk(options_.top_k, 1);  // greedy top-k

    moe::RoutingPlan plan;
    plan.expert_index = index;                    // [T, K] int64
    plan.weight = weight;                         // [T, K] fp32, differentiable
    plan.normalization = options_.normalization;  // renormalise over kept experts for k >= 2
    plan.capacity =
        moe::compute_capacity(options_.capacity, hidden.size(0), options_.num_experts, options_.top_k, is_training());
    plan.aux_losses["balance"] = {moe::load_balancing_loss(probs, index.select(1, 0)), options_.balance_loss_coef};
    return plan;  // priority left undefined: rank-major FCFS
  }

 private:
  int64_t projection_dim_ = 16;
  double temperature_ = 0.07;
};

// The registration runs when moe-train (or moe-translate) loads this library.
MOE_REGISTER_ROUTER("cosine", CosineRouterImpl);
