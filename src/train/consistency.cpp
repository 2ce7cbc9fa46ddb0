// Consistency regulariser and two-pass training step (see moe/train/consistency.h).
#include "moe/train/consistency.h"

#include <ATen/ATen.h>

#include <cmath>

#include "moe/core/error.h"

namespace moe {

at::Tensor consistency_loss(const at::Tensor& logits_a, const at::Tensor& logits_b, const at::Tensor& pad_mask,
                            Reduction reduction) {
  MOE_CHECK(logits_a.defined() && logits_b.defined() && logits_a.sizes() == logits_b.sizes(),
            "consistency_loss: logits_a and logits_b must have the same shape, got ",
            logits_a.defined() ? logits_a.sizes() : at::IntArrayRef{}, " and ",
            logits_b.defined() ? logits_b.sizes() : at::IntArrayRef{});
  MOE_CHECK(logits_a.dim() >= 1, "consistency_loss: logits must have a vocabulary dimension");
  const auto dtype = logits_a.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto log_a = at::log_softmax(logits_a.to(dtype), -1);
  auto log_b = at::log_softmax(logits_b.to(dtype), -1);
  // Entries that are -inf in both passes (a masked vocabulary entry) contribute 0, not NaN.
  auto both_masked = at::logical_and(at::isneginf(log_a), at::isneginf(log_b));
  auto diff = at::where(both_masked, at::zeros({}, log_a.options()), log_a - log_b);
  auto per_position = 0.5 * ((log_a.exp() - log_b.exp()) * diff).sum(-1);  // [...]
  at::Tensor keep;
  if (pad_mask.defined()) {
    MOE_CHECK(pad_mask.scalar_type() == at::kBool && pad_mask.sizes() == per_position.sizes(),
              "consistency_loss: pad_mask must be bool with shape ", per_position.sizes(), ", got ",
              pad_mask.scalar_type(), " ", pad_mask.sizes());
    keep = pad_mask.logical_not();
    per_position = at::where(keep, per_position, at::zeros({}, per_position.options()));
  }
  auto total = per_position.sum();
  if (reduction == Reduction::kSum) return total;
  if (!keep.defined()) return total / std::max<double>(static_cast<double>(per_position.numel()), 1.0);
  return total / keep.sum().clamp_min(1).to(total.scalar_type());  // on the device: no host read
}

void ConsistencyStepOptions::validate() const {
  MOE_CHECK(std::isfinite(alpha) && alpha >= 0, "ConsistencyStepOptions.alpha must be >= 0, got ", alpha);
}

ConsistencyStepResult consistency_training_step(const std::function<PassResult()>& run_pass,
                                                const at::Tensor& pad_mask, int64_t num_tokens,
                                                const ConsistencyStepOptions& options) {
  options.validate();
  MOE_CHECK(num_tokens >= 1, "consistency_training_step: num_tokens must be >= 1, got ", num_tokens);
  PassResult a = run_pass();
  PassResult b = run_pass();
  MOE_CHECK(a.task_loss.defined() && b.task_loss.defined(), "consistency_training_step: a pass returned no task_loss");
  ConsistencyStepResult out;
  out.task_loss_a = a.task_loss;
  out.task_loss_b = b.task_loss;
  out.consistency = consistency_loss(a.logits, b.logits, pad_mask, Reduction::kSum);
  auto total = a.task_loss + b.task_loss + options.alpha * out.consistency;
  // Aux losses are per-token means (MoEStats::total_aux_loss()); fairseq adds ntokens · aux to the
  // summed loss, so after the single normalisation each weighs as itself.
  const double tokens = static_cast<double>(num_tokens);
  if (a.aux_loss.defined()) total = total + a.aux_loss * tokens;
  if (b.aux_loss.defined()) total = total + b.aux_loss * tokens;
  out.loss = total / tokens;
  return out;
}

}  // namespace moe
