// Float64 finite-difference gradient check. LibTorch's C++ API has no gradcheck, so this one
// compares autograd's gradient of L = Σ f() · probe (probe a fixed random tensor) with respect to
// each given leaf tensor against central differences (L(x+ε) − L(x−ε)) / 2ε, element by element.
// The leaves may be inputs or module parameters: they are perturbed in place.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <sstream>
#include <vector>

namespace moe::testing {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  uint64_t probe_seed = 1234;
};

/// f: computes the output from the current values of `leaves` (float64 tensors with requires_grad).
inline ::testing::AssertionResult gradcheck(const std::function<at::Tensor()>& f, const std::vector<at::Tensor>& leaves,
                                            GradcheckOptions options = {}) {
  for (const auto& leaf : leaves) {
    if (leaf.scalar_type() != at::kDouble || !leaf.requires_grad()) {
      return ::testing::AssertionFailure() << "gradcheck needs float64 leaves with requires_grad";
    }
  }
  at::Tensor probe;
  {
    torch::NoGradGuard no_grad;
    auto out = f();
    auto gen = at::make_generator<at::CPUGeneratorImpl>(options.probe_seed);
    probe = at::empty(out.sizes(), out.options().dtype(at::kDouble)).uniform_(-1, 1, gen);
  }
  for (auto leaf : leaves) {
    if (leaf.grad().defined()) leaf.mutable_grad().zero_();
  }
  auto loss = (f().to(at::kDouble) * probe).sum();
  auto analytic = torch::autograd::grad({loss}, leaves, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                        /*create_graph=*/false, /*allow_unused=*/true);
  torch::NoGradGuard no_grad;
  auto loss_value = [&]() { return (f().to(at::kDouble) * probe).sum().item<double>(); };
  for (size_t i = 0; i < leaves.size(); ++i) {
    const auto& leaf = leaves[i];
    auto grad = analytic[i].defined() ? analytic[i].reshape({-1}) : at::zeros({leaf.numel()}, leaf.options());
    for (int64_t j = 0; j < leaf.numel(); ++j) {
      // Row-major element j as a 0-dim view, so that non-contiguous leaves work too.
      at::Tensor element = leaf;
      int64_t stride = leaf.numel();
      for (int64_t dim = 0, rest = j; dim < leaf.dim(); ++dim) {
        stride /= leaf.size(dim);
        element = element.select(0, rest / stride);
        rest %= stride;
      }
      const double original = element.item<double>();
      element.fill_(original + options.eps);
      const double plus = loss_value();
      element.fill_(original - options.eps);
      const double minus = loss_value();
      element.fill_(original);
      const double numeric = (plus - minus) / (2 * options.eps);
      const double value = grad[j].item<double>();
      if (std::abs(value - numeric) > options.atol + options.rtol * std::abs(numeric)) {
        std::ostringstream msg;
        msg << "leaf " << i << " element " << j << ": autograd " << value << " vs finite difference " << numeric;
        return ::testing::AssertionFailure() << msg.str();
      }
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace moe::testing
