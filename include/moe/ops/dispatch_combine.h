// dispatch (permute-gather of token rows into the expert-contiguous packed buffer) and combine
// (weighted gather-sum of expert outputs back to tokens), as autograd functions with explicit,
// deterministic backward passes: gather-sums over the layout's maps, no atomics and no
// order-dependent accumulation.
#pragma once

#include <ATen/core/Tensor.h>

#include "moe/ops/layout.h"

namespace moe {

/// packed[r] = x[layout.row_token[r]].
/// x: [T, d] floating (fp32, fp64, bf16, fp16), T == layout.num_tokens. Returns [N, d], x's dtype.
/// Backward: dx[t] = Σ_k dpacked[slot_row[t, k]] over kept slots, accumulated in fp32 (fp64 for fp64).
at::Tensor dispatch(const at::Tensor& x, const DispatchLayout& layout);

/// y[t] = Σ_k weight[t, k] · packed_out[slot_row[t, k]] over kept slots; tokens with no kept slot get 0.
/// packed_out: [N, d] floating, N == layout.num_rows().
/// weight:     [T, K] floating (usually fp32 from the router); dropped and empty slots are ignored.
/// Returns [T, d] in packed_out's dtype, accumulated in fp32 (fp64 when an input is fp64).
/// Backward: dpacked_out[r] = weight[t, k] · dy[t] with (t, k) = (row_token[r], row_slot[r]);
///           dweight[t, k] = <dy[t], packed_out[slot_row[t, k]]> (0 for dropped and empty slots).
at::Tensor combine(const at::Tensor& packed_out, const DispatchLayout& layout, const at::Tensor& weight);

}  // namespace moe
