// Example 03: train a tiny MoE regressor with Adam on a synthetic task whose target depends on the
// input's cluster (so experts can specialise). Prints the loss and the expert load as it trains;
// exits non-zero if the loss does not fall.
#include <torch/torch.h>

#include <iostream>

#include "moe/moe.h"

int main() {
  try {
    torch::manual_seed(1);
    const int64_t d = 16, clusters = 4, T = 256;
    // Each cluster has its own linear map; the input carries a cluster signature.
    auto centers = torch::randn({clusters, d}) * 3;
    auto maps = torch::randn({clusters, d, d}) / std::sqrt(static_cast<double>(d));
    auto make_batch = [&](torch::Tensor cluster) {
      auto x = centers.index_select(0, cluster) + torch::randn({cluster.size(0), d});
      auto y = torch::bmm(x.unsqueeze(1), maps.index_select(0, cluster)).squeeze(1);
      return std::make_pair(x, y);
    };

    moe::MoELayerOptions options(d, /*num_experts=*/4, /*hidden=*/32, /*top_k=*/1);
    options.router_options.capacity.capacity_factor = 1.5;
    moe::MoELayer layer(options);
    torch::optim::Adam optimizer(layer->parameters(), torch::optim::AdamOptions(3e-3));

    double first = 0, last = 0;
    for (int step = 1; step <= 300; ++step) {
      auto [x, y] = make_batch(torch::randint(clusters, {T}, torch::kLong));
      auto out = layer->forward(x);
      auto task = torch::mse_loss(out.output, y);
      auto loss = task + out.stats.total_aux_loss();
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      if (step == 1) first = task.item<double>();
      last = task.item<double>();
      if (step == 1 || step % 100 == 0) std::cout << "step " << step << " mse " << last << " | " << out.stats.to_string() << "\n";
    }
    if (!(last < 0.5 * first)) {
      std::cerr << "error: the loss did not halve (" << first << " -> " << last << ")\n";
      return 1;
    }
    std::cout << "mse " << first << " -> " << last << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
