// A program outside the moe tree: builds an MoE layer from the installed package, runs a training
// step, and checks the result is finite.
#include <moe/moe.h>
#include <torch/torch.h>

#include <iostream>

int main() {
  try {
    moe::MoELayer layer(moe::MoELayerOptions(/*d_model=*/32, /*num_experts=*/4, /*hidden=*/64, /*top_k=*/2));
    auto out = layer->forward(torch::randn({2, 10, 32}));
    (out.output.sum() + out.stats.total_aux_loss()).backward();
    if (!torch::isfinite(out.output).all().item<bool>()) {
      std::cerr << "error: non-finite output\n";
      return 1;
    }
    std::cout << moe::build_summary() << "\nconsumer ok: " << out.stats.to_string() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
