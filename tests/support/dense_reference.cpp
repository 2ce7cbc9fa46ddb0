// Dense one-hot MoE formulation (see dense_reference.h).
#include "dense_reference.h"

#include <limits>

namespace moe::testing {

OneHotRouting one_hot_routing(const at::Tensor& expert_index, const at::Tensor& weight, int64_t num_experts,
                              int64_t capacity, WeightNormalization normalization) {
  const int64_t T = expert_index.size(0), K = expert_index.size(1), E = num_experts;
  const int64_t C = capacity < 0 ? T : capacity;
  auto opts = weight.options();
  auto count = at::zeros({E}, opts);  // assignments already placed per expert
  std::vector<at::Tensor> masks, kept;
  for (int64_t k = 0; k < K; ++k) {
    auto idx = expert_index.select(1, k);
    auto valid = idx.ge(0);
    auto mask = at::one_hot(idx.clamp_min(0), E).to(weight.scalar_type()) * valid.unsqueeze(1).to(weight.scalar_type());
    auto location = at::cumsum(mask, 0) - 1 + count.unsqueeze(0);   // [T, E]
    count = count + mask.sum(0);
    auto keep = mask * location.lt(static_cast<double>(C)).to(weight.scalar_type());
    masks.push_back(location);
    kept.push_back(keep);
  }
  // Per-slot kept flags and weights.
  std::vector<at::Tensor> kept_slot;
  for (int64_t k = 0; k < K; ++k) kept_slot.push_back(kept[k].sum(1));  // [T] 0/1
  auto kept_tk = at::stack(kept_slot, 1);                                // [T, K]
  auto selected_tk = expert_index.ge(0).to(weight.scalar_type());
  auto w = weight * kept_tk;
  const double eps = weight.scalar_type() == at::kDouble ? std::numeric_limits<double>::epsilon()
                                                           : std::numeric_limits<float>::epsilon();
  if (normalization == WeightNormalization::kKept) {
    w = w / w.sum(1, true).clamp_min(eps);
  } else if (normalization == WeightNormalization::kSelected) {
    w = w / (weight * selected_tk).sum(1, true).clamp_min(eps);
  }
  OneHotRouting out;
  out.capacity = C;
  out.dispatch_mask = at::zeros({T, E, C}, opts);
  out.combine_weights = at::zeros({T, E, C}, opts);
  for (int64_t k = 0; k < K; ++k) {
    // one_hot(location) over C, masked by keep: [T, E, C]
    auto loc = masks[k].clamp(0, std::max<int64_t>(C - 1, 0)).to(at::kLong);
    auto loc_one_hot = C > 0 ? at::one_hot(loc, C).to(weight.scalar_type()) : at::zeros({T, E, 0}, opts);
    auto slot = loc_one_hot * kept[k].unsqueeze(-1);
    out.dispatch_mask = out.dispatch_mask + slot;
    out.combine_weights = out.combine_weights + slot * w.select(1, k).view({T, 1, 1});
  }
  return out;
}

at::Tensor one_hot_moe(const at::Tensor& x, const OneHotRouting& routing,
                       const std::function<at::Tensor(int64_t, const at::Tensor&)>& expert) {
  auto dispatched = at::einsum("tec,td->ecd", {routing.dispatch_mask.to(x.scalar_type()), x});
  std::vector<at::Tensor> outs;
  for (int64_t e = 0; e < dispatched.size(0); ++e) outs.push_back(expert(e, dispatched[e]));
  auto expert_out = at::stack(outs, 0);  // [E, C, d]
  return at::einsum("tec,ecd->td", {routing.combine_weights.to(x.scalar_type()), expert_out});
}

at::Tensor one_hot_moe_batched(const at::Tensor& x, const OneHotRouting& routing, ExpertBankImpl& bank) {
  const int64_t E = bank.options.num_experts;
  auto dispatched = at::einsum("tec,td->ecd", {routing.dispatch_mask.to(x.scalar_type()), x});  // [E, C, d]
  auto stack = [&](auto member) {
    std::vector<at::Tensor> parts;
    for (int64_t e = 0; e < E; ++e) parts.push_back(member(*bank.expert(e)));
    return at::stack(parts, 0);
  };
  const auto& o = bank.options.ffn;
  auto w1 = stack([](FFNImpl& f) { return f.w1; });
  auto w2 = stack([](FFNImpl& f) { return f.w2; });
  auto h = at::bmm(dispatched, w1);
  if (o.fc1_bias) h = h + stack([](FFNImpl& f) { return f.b1; }).unsqueeze(1);
  if (o.activation == Activation::kRelu) h = at::relu(h);
  if (o.activation == Activation::kGelu) h = at::gelu(h);
  if (o.activation == Activation::kSwiGLU) {
    auto g = at::bmm(dispatched, stack([](FFNImpl& f) { return f.w3; }));
    if (o.fc1_bias) g = g + stack([](FFNImpl& f) { return f.b3; }).unsqueeze(1);
    h = at::silu(h) * g;
  }
  auto y = at::bmm(h, w2);
  if (o.fc2_bias) y = y + stack([](FFNImpl& f) { return f.b2; }).unsqueeze(1);
  return at::einsum("tec,ecd->td", {routing.combine_weights.to(x.scalar_type()), y});
}

}  // namespace moe::testing
