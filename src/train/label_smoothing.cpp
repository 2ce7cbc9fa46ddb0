// Label-smoothed cross-entropy (see moe/train/label_smoothing.h).
#include "moe/train/label_smoothing.h"

#include <ATen/ATen.h>

#include "moe/core/error.h"

namespace moe {

LabelSmoothedLoss label_smoothed_cross_entropy(const at::Tensor& logits, const at::Tensor& target, double epsilon,
                                               int64_t padding_idx) {
  MOE_CHECK(logits.defined() && logits.dim() >= 1 && at::isFloatingType(logits.scalar_type()),
            "label_smoothed_cross_entropy: logits must be floating [..., V]");
  MOE_CHECK(target.defined() && target.scalar_type() == at::kLong &&
                target.sizes() == logits.sizes().slice(0, logits.dim() - 1),
            "label_smoothed_cross_entropy: target must be int64 ", logits.sizes().slice(0, logits.dim() - 1), ", got ",
            target.defined() ? target.sizes() : at::IntArrayRef{});
  MOE_CHECK(epsilon >= 0 && epsilon < 1, "label_smoothed_cross_entropy: epsilon must be in [0, 1), got ", epsilon);
  const int64_t V = logits.size(-1);
  MOE_CHECK(V >= 2, "label_smoothed_cross_entropy: vocabulary size must be >= 2, got ", V);
  const auto type = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;  // fp32 at least
  auto lprobs = at::log_softmax(logits.reshape({-1, V}), -1, type);
  auto keep = target.reshape({-1}).ne(padding_idx).to(type);
  auto tgt = target.reshape({-1, 1});
  auto safe_target = tgt.masked_fill(tgt.eq(padding_idx), 0);
  auto nll = -lprobs.gather(1, safe_target).squeeze(1) * keep;
  auto smooth = -lprobs.sum(-1) * keep;
  const double eps_i = epsilon / static_cast<double>(V - 1);
  LabelSmoothedLoss out;
  out.nll = nll.sum();
  out.loss = (1.0 - epsilon - eps_i) * out.nll + eps_i * smooth.sum();
  out.num_tokens = tgt.ne(padding_idx).sum();  // stays on the device: no read in the step
  return out;
}

}  // namespace moe
