// CPU references of dispatch and combine (see dispatch_combine_reference.h).
#include "ops/dispatch_combine_reference.h"

#include <ATen/ATen.h>

namespace moe::detail {
namespace {

// Gathers rows of `src` ([N, d]) at `index` (any shape, -1 = zero row) into [index.numel(), d].
// Empty slots read row 0 and are then zeroed with a select (not a multiply, so that a non-finite
// row 0 cannot leak into them); the select is skipped when every slot is kept.
at::Tensor gather_rows_or_zero(const at::Tensor& src, const at::Tensor& index) {
  auto flat = index.reshape({-1});
  if (src.size(0) == 0) return at::zeros({flat.numel(), src.size(1)}, src.options());
  auto valid = flat.ge(0);
  auto rows = src.index_select(0, flat.clamp_min(0));
  if (valid.all().item<bool>()) return rows;
  return at::where(valid.unsqueeze(1), rows, at::zeros({}, src.options()));
}

}  // namespace

c10::ScalarType accumulate_dtype(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() == at::kDouble || b.scalar_type() == at::kDouble) return at::kDouble;
  return at::kFloat;
}

at::Tensor dispatch_reference(const at::Tensor& x, const at::Tensor& row_token) {
  return x.index_select(0, row_token);
}

at::Tensor dispatch_backward_reference(const at::Tensor& grad_packed, const at::Tensor& slot_row) {
  const int64_t t = slot_row.size(0), k = slot_row.size(1), d = grad_packed.size(1);
  const auto acc = accumulate_dtype(grad_packed, grad_packed);
  auto gathered = gather_rows_or_zero(grad_packed, slot_row).to(acc).view({t, k, d});
  return gathered.sum(1).to(grad_packed.scalar_type());
}

at::Tensor combine_reference(const at::Tensor& packed, const at::Tensor& slot_row, const at::Tensor& weight) {
  const int64_t t = slot_row.size(0), k = slot_row.size(1), d = packed.size(1);
  const auto acc = accumulate_dtype(packed, weight);
  auto gathered = gather_rows_or_zero(packed, slot_row).to(acc).view({t, k, d});
  auto kept_weight = at::where(slot_row.ge(0), weight.to(acc), at::zeros({}, weight.options().dtype(acc)));
  // [T, 1, K] x [T, K, d]: the weighted sum over slots as one batched matmul (no [T, K, d] temporary).
  return at::bmm(kept_weight.unsqueeze(1), gathered).squeeze(1).to(packed.scalar_type());
}

std::pair<at::Tensor, at::Tensor> combine_backward_reference(const at::Tensor& grad_y,
                                                             const at::Tensor& packed,
                                                             const at::Tensor& slot_row,
                                                             const at::Tensor& row_token,
                                                             const at::Tensor& row_slot,
                                                             const at::Tensor& weight) {
  const int64_t t = slot_row.size(0), k = slot_row.size(1), d = packed.size(1);
  const auto acc = accumulate_dtype(packed, weight);
  auto dy = grad_y.to(acc);
  // dpacked[r] = weight[row_token[r], row_slot[r]] * dy[row_token[r]]
  auto row_weight = weight.to(acc).reshape({-1}).index_select(0, row_token * k + row_slot);
  auto grad_packed = dy.index_select(0, row_token).mul_(row_weight.unsqueeze(-1)).to(packed.scalar_type());
  // dweight[t, k] = <dy[t], packed[slot_row[t, k]]>, 0 where the slot was not kept: [T, K, d] x [T, d, 1]
  auto gathered = gather_rows_or_zero(packed, slot_row).to(acc).view({t, k, d});
  auto grad_weight = at::bmm(gathered, dy.unsqueeze(-1)).squeeze(-1).to(weight.scalar_type());
  return {grad_packed, grad_weight};
}

}  // namespace moe::detail
