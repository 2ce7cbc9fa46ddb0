// FFN experts and the ExpertBank (see moe/layers/expert_bank.h).
#include "moe/layers/expert_bank.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>
#include <torch/nn/functional/dropout.h>

#include <cmath>

#include "moe/core/error.h"

namespace moe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// A bank's stack as a differentiable function of the expert parameters that alias it: the forward
// returns the stack's storage itself (no copy); the backward hands each parameter its slice of the
// stack's gradient (views of one buffer, no copy either), and none to an expert that had no rows in
// this call, as the per-expert path leaves it: AdamW then skips an expert that received no token.
struct StackOfParameters : public torch::autograd::Function<StackOfParameters> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& storage, at::TensorList parameters,
                            std::vector<int64_t> rows) {
    ctx->saved_data["rows"] = rows;
    (void)parameters;
    return storage.detach();
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto rows = ctx->saved_data["rows"].toIntVector();
    tensor_list out{at::Tensor()};  // the storage itself takes no gradient
    for (size_t e = 0; e < rows.size(); ++e)
      out.push_back(grads[0].defined() && rows[e] > 0 ? grads[0][static_cast<int64_t>(e)] : at::Tensor());
    out.push_back(at::Tensor());  // rows
    return out;
  }
};

struct Kind {
  at::Tensor FFNImpl::*member;
  const char* name;
};
constexpr Kind kKinds[] = {{&FFNImpl::w1, "w1"}, {&FFNImpl::b1, "b1"}, {&FFNImpl::w2, "w2"},
                           {&FFNImpl::b2, "b2"}, {&FFNImpl::w3, "w3"}, {&FFNImpl::b3, "b3"}};

}  // namespace

Activation parse_activation(const std::string& name) {
  if (name == "relu") return Activation::kRelu;
  if (name == "gelu") return Activation::kGelu;
  if (name == "swiglu") return Activation::kSwiGLU;
  throw Error("activation must be one of relu, gelu, swiglu; got '" + name + "'");
}

std::string to_string(Activation activation) {
  switch (activation) {
    case Activation::kRelu: return "relu";
    case Activation::kGelu: return "gelu";
    case Activation::kSwiGLU: return "swiglu";
  }
  return "?";
}

ExpertInit parse_expert_init(const std::string& name) {
  if (name == "independent") return ExpertInit::kIndependent;
  if (name == "replicated") return ExpertInit::kReplicated;
  throw Error("expert init must be one of independent, replicated; got '" + name + "'");
}

std::string to_string(ExpertInit init) { return init == ExpertInit::kIndependent ? "independent" : "replicated"; }

void FFNOptions::validate(const std::string& owner) const {
  MOE_CHECK(d_model >= 1, owner, ".d_model must be >= 1, got ", d_model);
  MOE_CHECK(hidden >= 1, owner, ".hidden must be >= 1, got ", hidden);
  MOE_CHECK(std::isfinite(activation_dropout) && activation_dropout >= 0 && activation_dropout < 1, owner,
            ".activation_dropout must be in [0, 1), got ", activation_dropout);
  MOE_CHECK(std::isfinite(output_dropout) && output_dropout >= 0 && output_dropout < 1, owner,
            ".output_dropout must be in [0, 1), got ", output_dropout);
}

FFNImpl::FFNImpl(const FFNOptions& options_) : options(options_) {
  options.validate();
  const int64_t d = options.d_model, h = options.hidden;
  w1 = register_parameter("w1", at::empty({d, h}));
  if (options.fc1_bias) b1 = register_parameter("b1", at::empty({h}));
  w2 = register_parameter("w2", at::empty({h, d}));
  if (options.fc2_bias) b2 = register_parameter("b2", at::empty({d}));
  if (options.activation == Activation::kSwiGLU) {
    w3 = register_parameter("w3", at::empty({d, h}));
    if (options.fc1_bias) b3 = register_parameter("b3", at::empty({h}));
  }
  reset_parameters();
}

void FFNImpl::reset_parameters() {
  // nn.Linear's default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  torch::NoGradGuard no_grad;
  const double bound1 = 1.0 / std::sqrt(static_cast<double>(options.d_model));
  const double bound2 = 1.0 / std::sqrt(static_cast<double>(options.hidden));
  for (auto* p : {&w1, &b1, &w3, &b3}) {
    if (p->defined()) p->uniform_(-bound1, bound1);
  }
  for (auto* p : {&w2, &b2}) {
    if (p->defined()) p->uniform_(-bound2, bound2);
  }
}

at::Tensor FFNImpl::forward(const at::Tensor& x) {
  namespace F = torch::nn::functional;
  auto h = b1.defined() ? at::addmm(b1, x, w1) : at::matmul(x, w1);
  switch (options.activation) {
    case Activation::kRelu: h = at::relu(h); break;
    case Activation::kGelu: h = at::gelu(h); break;
    case Activation::kSwiGLU: h = at::silu(h) * (b3.defined() ? at::addmm(b3, x, w3) : at::matmul(x, w3)); break;
  }
  if (options.activation_dropout > 0) {
    h = F::dropout(h, F::DropoutFuncOptions().p(options.activation_dropout).training(is_training()));
  }
  auto y = b2.defined() ? at::addmm(b2, h, w2) : at::matmul(h, w2);
  if (options.output_dropout > 0) {
    y = F::dropout(y, F::DropoutFuncOptions().p(options.output_dropout).training(is_training()));
  }
  return y;
}

void ExpertBankOptions::validate(const std::string& owner) const {
  ffn.validate(owner + ".ffn");
  MOE_CHECK(num_experts >= 1, owner, ".num_experts must be >= 1, got ", num_experts);
  MOE_CHECK(first_expert >= 0 && first_expert < num_experts, owner, ".first_expert must be in [0, ",
            num_experts, "), got ", first_expert);
  MOE_CHECK(num_local_experts == -1 || (num_local_experts >= 1 && first_expert + num_local_experts <= num_experts),
            owner, ".num_local_experts must be -1 (all) or in [1, ", num_experts - first_expert, "], got ",
            num_local_experts);
}

ExpertBankImpl::ExpertBankImpl(const ExpertBankOptions& options_) : options(options_) {
  options.validate();
  options.num_local_experts = options.local_count();
  // A shard draws the initial values of every expert of the layer in global-id order and keeps its
  // own, so it holds exactly what the full bank would hold under the same seed (and the random
  // stream after it is the same on every rank).
  const int64_t first = options.first_expert, last = first + options.num_local_experts;
  for (int64_t g = 0; g < options.num_experts; ++g) {
    FFN f(options.ffn);
    if (g >= first && g < last) {
      experts_.push_back(register_module(std::to_string(g), f));
    } else if (!scratch_) {
      scratch_ = f;
    }
  }
  reset_parameters();
  restack();
}

void ExpertBankImpl::restack() {
  torch::NoGradGuard no_grad;
  stacks_.clear();
  for (const Kind& kind : kKinds) {
    if (!((*experts_.front()).*kind.member).defined()) continue;
    std::vector<at::Tensor> parts;
    for (auto& e : experts_) parts.push_back(((*e).*kind.member).detach());
    Stack stack{kind.member, kind.name, at::stack(parts)};
    // set_data keeps each parameter's identity (name, autograd leaf, optimizer handle, gradient) and
    // points it at its slice of the stack.
    for (size_t i = 0; i < experts_.size(); ++i) ((*experts_[i]).*kind.member).set_data(stack.storage[i]);
    stacks_.push_back(std::move(stack));
  }
  ++restacks_;
}

bool ExpertBankImpl::stacks_intact() const {
  if (stacks_.empty()) return false;
  for (const auto& stack : stacks_) {
    const auto& s = stack.storage;
    for (size_t i = 0; i < experts_.size(); ++i) {
      const at::Tensor& p = (*experts_[i]).*stack.member;
      if (!p.defined() || p.device() != s.device() || p.scalar_type() != s.scalar_type() || !p.is_alias_of(s) ||
          p.storage_offset() != s.storage_offset() + static_cast<int64_t>(i) * s.stride(0) ||
          p.sizes() != s.sizes().slice(1) || p.strides() != s.strides().slice(1))
        return false;
    }
  }
  return true;
}

at::Tensor ExpertBankImpl::stacked(const std::string& kind) {
  if (!stacks_intact()) restack();
  for (const auto& stack : stacks_)
    if (stack.kind == kind) return stack.storage;
  throw Error("ExpertBank: no stacked parameter '" + kind + "' (this FFN has " +
              [&] {
                std::string names;
                for (const auto& stack : stacks_) names += (names.empty() ? "" : ", ") + stack.kind;
                return names;
              }() +
              ")");
}

void ExpertBankImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  const int64_t first = options.first_expert, last = first + options.num_local_experts;
  std::vector<at::Tensor> expert0;  // replicated init: every expert copies expert 0
  for (int64_t g = 0; g < options.num_experts; ++g) {
    FFN f = (g >= first && g < last) ? experts_[static_cast<size_t>(g - first)] : scratch_;
    f->reset_parameters();
    if (g == 0 && options.init == ExpertInit::kReplicated)
      for (const auto& p : f->parameters()) expert0.push_back(p.detach().clone());
  }
  if (options.init == ExpertInit::kReplicated) {
    for (auto& e : experts_) {
      auto target = e->parameters();
      for (size_t j = 0; j < target.size(); ++j) target[j].copy_(expert0[j]);
    }
  }
}

FFN ExpertBankImpl::expert(int64_t global_id) const {
  const int64_t local = global_id - options.first_expert;
  MOE_CHECK(local >= 0 && local < static_cast<int64_t>(experts_.size()), "ExpertBank: expert ", global_id,
            " is not held here (held: [", options.first_expert, ", ", options.first_expert + options.num_local_experts,
            "))");
  return experts_[local];
}

at::Tensor ExpertBankImpl::forward(const at::Tensor& packed, const at::Tensor& rows_per_expert) {
  const int64_t E = static_cast<int64_t>(experts_.size());
  MOE_CHECK(packed.dim() == 2 && packed.size(1) == options.ffn.d_model, "ExpertBank: packed must be [N, ",
            options.ffn.d_model, "], got ", packed.sizes());
  MOE_CHECK(rows_per_expert.dim() == 1 && rows_per_expert.size(0) == E &&
                rows_per_expert.scalar_type() == at::kLong && rows_per_expert.device().is_cpu(),
            "ExpertBank: rows_per_expert must be a CPU int64 [", E, "] tensor, got ", rows_per_expert.sizes(), " ",
            rows_per_expert.scalar_type(), " on ", rows_per_expert.device());
  auto counts = rows_per_expert.contiguous();
  const int64_t* c = counts.data_ptr<int64_t>();
  std::vector<int64_t> sizes(c, c + E);
  int64_t total = 0;
  for (int64_t e = 0; e < E; ++e) {
    MOE_CHECK(sizes[e] >= 0, "ExpertBank: rows_per_expert[", e, "] = ", sizes[e], " is negative");
    total += sizes[e];
  }
  MOE_CHECK(total == packed.size(0), "ExpertBank: rows_per_expert sums to ", total, " but packed has ",
            packed.size(0), " rows");
  if (packed.is_cuda() || options.gemm != GroupedGemmBackend::kAuto) return forward_grouped(packed, sizes);
  // split_with_sizes, not one narrow per expert: its backward is a single concatenation, whereas
  // each narrow's backward would materialise a full [N, d] gradient.
  auto segments = packed.split_with_sizes(sizes, 0);
  std::vector<at::Tensor> outputs;
  for (int64_t e = 0; e < E; ++e) {
    if (sizes[e] > 0) outputs.push_back(experts_[e]->forward(segments[e]));
  }
  if (outputs.empty()) return packed.new_zeros({0, options.ffn.d_model});
  return outputs.size() == 1 ? outputs.front() : at::cat(outputs, 0);
}

at::Tensor ExpertBankImpl::forward_grouped(const at::Tensor& packed, const std::vector<int64_t>& rows) {
  namespace F = torch::nn::functional;
  const FFNOptions& o = options.ffn;
  if (!stacks_intact()) restack();
  // Under autocast the grouped GEMMs run in the autocast dtype, as at::linear would: the stacks are
  // cast once per forward (the cast's backward returns fp32 gradients to the fp32 parameters).
  const auto device_type = packed.device().type();
  const bool cast = at::autocast::is_autocast_enabled(device_type) && packed.scalar_type() != at::kDouble;
  const auto dtype = cast ? at::autocast::get_autocast_dtype(device_type) : packed.scalar_type();
  // [E, d, h] weights and [E, h] biases straight from the stacked storage (undefined when the FFN
  // has none).
  auto stacked_param = [&](at::Tensor FFNImpl::*member) -> at::Tensor {
    for (const auto& stack : stacks_) {
      if (stack.member != member) continue;
      std::vector<at::Tensor> params;
      for (auto& e : experts_) params.push_back((*e).*member);
      auto w = StackOfParameters::apply(stack.storage, at::TensorList(params), rows);
      return w.scalar_type() == dtype ? w : w.to(dtype);
    }
    return at::Tensor();
  };
  auto x = packed.to(dtype).contiguous();
  auto h = grouped_linear(x, stacked_param(&FFNImpl::w1), stacked_param(&FFNImpl::b1), rows, options.gemm);
  switch (o.activation) {
    case Activation::kRelu: h = at::relu(h); break;
    case Activation::kGelu: h = at::gelu(h); break;
    case Activation::kSwiGLU:
      h = at::silu(h) * grouped_linear(x, stacked_param(&FFNImpl::w3), stacked_param(&FFNImpl::b3), rows, options.gemm);
      break;
  }
  if (o.activation_dropout > 0) {
    h = F::dropout(h, F::DropoutFuncOptions().p(o.activation_dropout).training(is_training()));
  }
  auto y = grouped_linear(h, stacked_param(&FFNImpl::w2), stacked_param(&FFNImpl::b2), rows, options.gemm);
  if (o.output_dropout > 0) {
    y = F::dropout(y, F::DropoutFuncOptions().p(o.output_dropout).training(is_training()));
  }
  return y;
}

}  // namespace moe
