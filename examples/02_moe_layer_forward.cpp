// Example 02: an MoELayer as a drop-in FFN. Forward a [B, S, d] batch, read the statistics, add the
// auxiliary losses to the objective and backpropagate.
#include <torch/torch.h>

#include <iostream>

#include "moe/moe.h"

int main() {
  try {
    torch::manual_seed(0);
    moe::MoELayerOptions options(/*d_model=*/64, /*num_experts=*/8, /*hidden=*/128, /*top_k=*/2);
    options.router_options.capacity.capacity_factor = 1.25;
    options.router_options.z_loss_coef = 1e-3;
    options.experts.ffn.activation = moe::Activation::kSwiGLU;
    moe::MoELayer layer(options);

    auto x = torch::randn({4, 32, 64});
    moe::MoEOutput out = layer->forward(x);
    auto loss = out.output.pow(2).mean() + out.stats.total_aux_loss();
    loss.backward();
    std::cout << moe::build_summary() << "\n";
    std::cout << "output " << out.output.sizes() << "; " << out.stats.to_string() << "\n";
    std::cout << "parameters: ";
    int64_t count = 0;
    for (const auto& p : layer->named_parameters()) count += p.value().numel();
    std::cout << count << " (e.g. " << layer->named_parameters().keys().back() << ")\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
