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

// Each token's kept slots moved to the front (stable), cut to the longest kept list: the gather-sums
// then cost O(T·K_kept·d) instead of O(T·K·d), which matters when variable-k routers pad K far beyond
// what capacity keeps (XMoE with an unsure router). columns: [T, K'] original slot of each entry.
struct CompactSlots {
  at::Tensor slot_row;  // [T, K'], -1 = nothing
  at::Tensor columns;   // [T, K'] int64, undefined when nothing was compacted
};

CompactSlots compact_slots(const at::Tensor& slot_row) {
  const int64_t T = slot_row.size(0), K = slot_row.size(1);
  if (T == 0 || K <= 1) return {slot_row, at::Tensor()};
  auto empty = slot_row.lt(0);
  const int64_t kept_max = K - empty.sum(1).min().item<int64_t>();
  if (kept_max == K) return {slot_row, at::Tensor()};
  auto columns = std::get<1>(empty.to(at::kByte).sort(/*stable=*/true, /*dim=*/1, /*descending=*/false));
  columns = columns.narrow(1, 0, std::max<int64_t>(kept_max, 1)).contiguous();
  return {slot_row.gather(1, columns), columns};
}

}  // namespace

c10::ScalarType accumulate_dtype(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() == at::kDouble || b.scalar_type() == at::kDouble) return at::kDouble;
  return at::kFloat;
}

at::Tensor dispatch_reference(const at::Tensor& x, const at::Tensor& row_token) {
  return x.index_select(0, row_token);
}

at::Tensor dispatch_backward_reference(const at::Tensor& grad_packed, const at::Tensor& full_slot_row) {
  const auto slot_row = compact_slots(full_slot_row).slot_row;
  const int64_t t = slot_row.size(0), k = slot_row.size(1), d = grad_packed.size(1);
  const auto acc = accumulate_dtype(grad_packed, grad_packed);
  auto gathered = gather_rows_or_zero(grad_packed, slot_row).to(acc).view({t, k, d});
  return gathered.sum(1).to(grad_packed.scalar_type());
}

at::Tensor combine_reference(const at::Tensor& packed, const at::Tensor& full_slot_row, const at::Tensor& full_weight) {
  const auto compact = compact_slots(full_slot_row);
  const auto& slot_row = compact.slot_row;
  const auto weight = compact.columns.defined() ? full_weight.gather(1, compact.columns) : full_weight;
  const int64_t t = slot_row.size(0), k = slot_row.size(1), d = packed.size(1);
  const auto acc = accumulate_dtype(packed, weight);
  auto gathered = gather_rows_or_zero(packed, slot_row).to(acc).view({t, k, d});
  auto kept_weight = at::where(slot_row.ge(0), weight.to(acc), at::zeros({}, weight.options().dtype(acc)));
  // [T, 1, K] x [T, K, d]: the weighted sum over slots as one batched matmul (no [T, K, d] temporary).
  return at::bmm(kept_weight.unsqueeze(1), gathered).squeeze(1).to(packed.scalar_type());
}

std::pair<at::Tensor, at::Tensor> combine_backward_reference(const at::Tensor& grad_y,
                                                             const at::Tensor& packed,
                                                             const at::Tensor& full_slot_row,
                                                             const at::Tensor& row_token,
                                                             const at::Tensor& row_slot,
                                                             const at::Tensor& weight) {
  const int64_t k = full_slot_row.size(1);
  const auto acc = accumulate_dtype(packed, weight);
  auto dy = grad_y.to(acc);
  // dpacked[r] = weight[row_token[r], row_slot[r]] * dy[row_token[r]]
  auto row_weight = weight.to(acc).reshape({-1}).index_select(0, row_token * k + row_slot);
  auto grad_packed = dy.index_select(0, row_token).mul_(row_weight.unsqueeze(-1)).to(packed.scalar_type());
  // dweight[t, k] = <dy[t], packed[slot_row[t, k]]>, 0 where the slot was not kept: [T, K, d] x [T, d, 1]
  const auto compact = compact_slots(full_slot_row);
  const int64_t t = compact.slot_row.size(0), kc = compact.slot_row.size(1), d = packed.size(1);
  auto gathered = gather_rows_or_zero(packed, compact.slot_row).to(acc).view({t, kc, d});
  auto grad_weight = at::bmm(gathered, dy.unsqueeze(-1)).squeeze(-1).to(weight.scalar_type());
  if (compact.columns.defined()) {
    // Back to [T, K]; columns are distinct within a row, so the scatter has one writer per element.
    grad_weight = at::zeros({t, k}, grad_weight.options()).scatter_(1, compact.columns, grad_weight);
  }
  return {grad_packed, grad_weight};
}

}  // namespace moe::detail
