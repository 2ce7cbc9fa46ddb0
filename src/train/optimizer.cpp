// AdamW under the inverse-sqrt schedule, with named state (see moe/train/optimizer.h).
#include "moe/train/optimizer.h"

#include <ATen/ATen.h>

#include <map>
#include <tuple>

#include "moe/core/error.h"

namespace moe {

Optimizer::Optimizer(const std::vector<std::pair<std::string, at::Tensor>>& named_parameters, const TrainingConfig& t)
    : named_(named_parameters),
      moments_(named_parameters.size()),
      schedule_{t.lr, t.warmup, t.warmup_init_lr},
      beta1_(t.adam_beta1),
      beta2_(t.adam_beta2),
      eps_(t.adam_eps),
      weight_decay_(t.weight_decay) {}

void Optimizer::zero_grad() {
  for (auto& [name, p] : named_)
    if (p.grad().defined()) p.mutable_grad().reset();
}

double Optimizer::step(int64_t update) {
  const double lr = schedule_.at(update);
  // The fused kernel takes lists of one device and dtype: group the parameters that have gradients.
  struct Group {
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
  };
  std::map<std::tuple<int, int, int>, Group> groups;
  for (size_t i = 0; i < named_.size(); ++i) {
    auto& p = named_[i].second;
    if (!p.grad().defined()) continue;
    auto& m = moments_[i];
    if (!m.exp_avg.defined()) {
      m.exp_avg = at::zeros_like(p, at::MemoryFormat::Preserve);
      m.exp_avg_sq = at::zeros_like(p, at::MemoryFormat::Preserve);
      m.step = at::zeros({}, p.options().dtype(at::kFloat));
    }
    auto& g = groups[{static_cast<int>(p.device().type()), p.device().index(), static_cast<int>(p.scalar_type())}];
    g.params.push_back(p);
    g.grads.push_back(p.grad());
    g.exp_avgs.push_back(m.exp_avg);
    g.exp_avg_sqs.push_back(m.exp_avg_sq);
    g.steps.push_back(m.step);
  }
  at::NoGradGuard no_grad;
  for (auto& [key, g] : groups) {
    at::_foreach_add_(g.steps, 1);  // the kernel reads the step count; it does not advance it
    at::_fused_adamw_(g.params, g.grads, g.exp_avgs, g.exp_avg_sqs, /*max_exp_avg_sqs=*/{}, g.steps, lr, beta1_, beta2_,
                      weight_decay_, eps_, /*amsgrad=*/false, /*maximize=*/false);
  }
  return lr;
}

NamedState Optimizer::state() const {
  NamedState out;
  for (size_t i = 0; i < named_.size(); ++i) {
    const auto& m = moments_[i];
    if (!m.exp_avg.defined()) continue;
    const auto& name = named_[i].first;
    out["optimizer." + name + ".exp_avg"] = m.exp_avg;
    out["optimizer." + name + ".exp_avg_sq"] = m.exp_avg_sq;
    out["optimizer." + name + ".step"] = m.step.to(at::kCPU, at::kLong);
  }
  return out;
}

void Optimizer::load_state(const NamedState& state, const std::string& source) {
  for (size_t i = 0; i < named_.size(); ++i) {
    const auto& [name, p] = named_[i];
    const auto key = "optimizer." + name;
    auto avg = state.find(key + ".exp_avg");
    if (avg == state.end()) continue;  // no update has touched this parameter yet
    auto sq = state.find(key + ".exp_avg_sq"), step = state.find(key + ".step");
    MOE_CHECK(sq != state.end() && step != state.end(), source, " has an incomplete optimizer state for '", name, "'");
    MOE_CHECK(avg->second.sizes() == p.sizes() && sq->second.sizes() == p.sizes(), source, ": the optimizer state of '",
              name, "' has shape ", avg->second.sizes(), " but the parameter has ", p.sizes());
    const auto count = step->second.item<int64_t>();
    MOE_CHECK(count >= 0, source, ": the optimizer step of '", name, "' is ", count, "; allowed: >= 0");
    auto& m = moments_[i];
    m.exp_avg = avg->second.to(p.device(), p.scalar_type()).clone();
    m.exp_avg_sq = sq->second.to(p.device(), p.scalar_type()).clone();
    m.step = at::full({}, static_cast<double>(count), p.options().dtype(at::kFloat));
  }
}

}  // namespace moe
