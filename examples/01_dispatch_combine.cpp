// Example 01: the shared data path by hand. A routing decision becomes a DispatchLayout (stable
// counting sort by expert, capacity in priority order); dispatch packs token rows expert by expert;
// combine gathers them back with weights. Gradients flow through both.
#include <torch/torch.h>

#include <iostream>

#include "moe/moe.h"

int main() {
  try {
    // 4 tokens, top-2 over 3 experts, capacity 2 rows per expert.
    auto expert_index = torch::tensor({0, 1, 0, 2, 1, 0, 0, 2}, torch::kLong).view({4, 2});
    auto layout = moe::build_layout(expert_index, /*num_experts=*/3, /*capacity=*/2);
    std::cout << "tokens per expert: " << layout.tokens_per_expert << "\n";
    std::cout << "packed row of each (token, slot), -1 = dropped:\n" << layout.slot_row << "\n";
    std::cout << "dropped assignments: " << layout.num_dropped.item<int64_t>() << "\n";

    auto x = torch::randn({4, 8}, torch::requires_grad());
    auto packed = moe::dispatch(x, layout);  // [N, 8], rows grouped by expert
    auto weight = torch::full({4, 2}, 0.5);
    auto y = moe::combine(packed * 2.0, layout, weight);  // every "expert" doubles its rows
    y.sum().backward();
    std::cout << "y = Σ_k w·2x over kept slots; dy/dx per token (0, 1 or 2 kept slots):\n"
              << x.grad().select(1, 0) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
