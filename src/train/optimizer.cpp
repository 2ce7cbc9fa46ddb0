// AdamW under the inverse-sqrt schedule, with named state (see moe/train/optimizer.h).
#include "moe/train/optimizer.h"

#include <torch/optim/adamw.h>

#include "moe/core/error.h"

namespace moe {

Optimizer::Optimizer(const std::vector<std::pair<std::string, at::Tensor>>& named_parameters, const TrainingConfig& t)
    : named_(named_parameters), schedule_{t.lr, t.warmup, t.warmup_init_lr} {
  std::vector<at::Tensor> params;
  for (const auto& [name, p] : named_) params.push_back(p);
  adam_ = std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(t.warmup_init_lr)
                                                            .betas({t.adam_beta1, t.adam_beta2})
                                                            .eps(t.adam_eps)
                                                            .weight_decay(t.weight_decay));
}

Optimizer::~Optimizer() = default;

void Optimizer::zero_grad() { adam_->zero_grad(); }

double Optimizer::step(int64_t update) {
  const double lr = schedule_.at(update);
  for (auto& group : adam_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  adam_->step();
  return lr;
}

NamedState Optimizer::state() const {
  NamedState out;
  for (const auto& [name, p] : named_) {
    auto it = adam_->state().find(p.unsafeGetTensorImpl());
    if (it == adam_->state().end()) continue;
    auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
    out["optimizer." + name + ".exp_avg"] = st.exp_avg();
    out["optimizer." + name + ".exp_avg_sq"] = st.exp_avg_sq();
    out["optimizer." + name + ".step"] = at::tensor(st.step(), at::kLong);
  }
  return out;
}

void Optimizer::load_state(const NamedState& state, const std::string& source) {
  for (const auto& [name, p] : named_) {
    const auto key = "optimizer." + name;
    auto avg = state.find(key + ".exp_avg");
    if (avg == state.end()) continue;  // no update has touched this parameter yet
    auto sq = state.find(key + ".exp_avg_sq"), step = state.find(key + ".step");
    MOE_CHECK(sq != state.end() && step != state.end(), source, " has an incomplete optimizer state for '", name, "'");
    MOE_CHECK(avg->second.sizes() == p.sizes() && sq->second.sizes() == p.sizes(), source, ": the optimizer state of '",
              name, "' has shape ", avg->second.sizes(), " but the parameter has ", p.sizes());
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(step->second.item<int64_t>());
    st->exp_avg(avg->second.to(p.device(), p.scalar_type()).clone());
    st->exp_avg_sq(sq->second.to(p.device(), p.scalar_type()).clone());
    adam_->state()[p.unsafeGetTensorImpl()] = std::move(st);
  }
}

}  // namespace moe
