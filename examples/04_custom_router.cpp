// Example 04: write a router outside the library and use it by name. The cosine router scores
// experts by the cosine similarity between a projected token and each expert's embedding, divided
// by a temperature (Chi et al. 2022, "On the Representation Collapse of Sparse Mixture of Experts";
// Tutel's cosine gate). Everything after the RoutingPlan — capacity, layout, dispatch, experts,
// combine, statistics, checkpointing of the router's parameters — comes from the library.
// docs/writing-a-router.md walks through this file.
#include <torch/torch.h>

#include <cmath>
#include <iostream>

#include "moe/moe.h"

// ---- 1. the router: a RouterImpl subclass with its parameters and route() -----------------------
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

int main() {
  try {
    // ---- 2. register it under a name (once, at start-up) ---------------------------------------
    moe::register_router("cosine",
                         [](const moe::RouterOptions& options) { return std::make_shared<CosineRouterImpl>(options); });

    // ---- 3. use it by name, like any built-in router -------------------------------------------
    torch::manual_seed(0);
    moe::MoELayerOptions options(/*d_model=*/32, /*num_experts=*/8, /*hidden=*/64, /*top_k=*/2);
    options.router = "cosine";
    options.router_options.extra["cosine_temperature"] = "0.1";
    moe::MoELayer layer(options);
    torch::optim::Adam optimizer(layer->parameters(), torch::optim::AdamOptions(1e-2));

    auto x = torch::randn({256, 32});
    auto target = torch::tanh(x.flip(1));
    double first = 0, last = 0;
    for (int step = 0; step < 100; ++step) {
      auto out = layer->forward(x);
      auto task = torch::mse_loss(out.output, target);
      optimizer.zero_grad();
      (task + out.stats.total_aux_loss()).backward();
      optimizer.step();
      if (step == 0) first = task.item<double>();
      last = task.item<double>();
    }
    std::cout << "routers: ";
    for (const auto& name : moe::known_routers()) std::cout << name << " ";
    std::cout << "\nrouter parameters: ";
    for (const auto& p : layer->router->named_parameters()) std::cout << "router." << p.key() << " ";
    std::cout << "\nmse " << first << " -> " << last << "; " << layer->forward(x).stats.to_string() << "\n";
    if (!(last < first)) {
      std::cerr << "error: training with the cosine router did not reduce the loss\n";
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
