// Router auxiliary losses (see moe/routing/losses.h).
#include "moe/routing/losses.h"

#include <ATen/ATen.h>

#include "moe/core/error.h"

namespace moe {

at::Tensor load_balancing_loss(const at::Tensor& probs, const at::Tensor& top1, const at::Tensor& padding) {
  MOE_CHECK(probs.dim() == 2, "load_balancing_loss: probs must be [T, E], got ", probs.sizes());
  MOE_CHECK(top1.dim() == 1 && top1.size(0) == probs.size(0), "load_balancing_loss: top1 must be [", probs.size(0),
            "], got ", top1.sizes());
  const int64_t T = probs.size(0), E = probs.size(1);
  if (T == 0) return (probs.sum() * 0).reshape({});
  auto mean_prob = probs.mean(0);  // P_e
  // f_e: padding rows are left out of the counts, not of the denominator (fairseq's input mask).
  auto counted = padding.defined() ? (~padding.reshape({T})).to(probs.scalar_type()) : at::ones({T}, probs.options());
  auto fraction = at::zeros({E}, probs.options()).index_add_(0, top1, counted) / static_cast<double>(T);
  return (mean_prob * fraction).sum() * static_cast<double>(E);
}

at::Tensor router_z_loss(const at::Tensor& logits) {
  MOE_CHECK(logits.dim() == 2, "router_z_loss: logits must be [T, E], got ", logits.sizes());
  if (logits.size(0) == 0) return (logits.sum() * 0).reshape({});
  return at::logsumexp(logits, {1}).pow(2).mean();
}

}  // namespace moe
