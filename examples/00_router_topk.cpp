// Example 00: route tokens with the built-in top-k router (GShard top-2) and look at the plan:
// which experts each token chose, the combine weights, the capacity and the auxiliary losses.
#include <torch/torch.h>

#include <iostream>

#include "moe/moe.h"

int main() {
  try {
    torch::manual_seed(0);
    moe::RouterOptions options;
    options.d_model = 16;
    options.num_experts = 4;
    options.top_k = 2;
    auto router = moe::make_router("topk", options);  // known names: moe::known_routers()
    router->train();
    auto hidden = torch::randn({6, 16});  // [T, d]
    moe::RoutingPlan plan = router->route(hidden);
    std::cout << "expert_index [T, K]:\n" << plan.expert_index << "\n";
    std::cout << "weight [T, K] (normalised over kept experts after capacity):\n" << plan.weight << "\n";
    std::cout << "capacity per expert: " << plan.capacity << "\n";
    for (const auto& [name, loss] : plan.aux_losses) {
      std::cout << "aux loss " << name << " = " << loss.value.item<double>() << " (coefficient " << loss.coefficient
                << ")\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
