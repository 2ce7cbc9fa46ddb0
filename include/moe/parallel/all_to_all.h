// all_to_all_rows: the row exchange of expert parallelism as an autograd function. Forward sends
// input_splits[q] rows to rank q and receives output_splits[q] rows from it; backward sends the
// gradients back along the same routes (the splits swapped). Deterministic: no reduction happens.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include "moe/parallel/communicator.h"

namespace moe {

/// input:  [Σ input_splits, ...] floating, on the communicator's device type.
/// anchor: optional 0-dim tensor with requires_grad. A collective must be entered by every rank, in
///         backward too; tying the exchange to an anchor that requires grad puts it in every rank's
///         backward graph, even on a rank whose own rows need no gradient (no tokens, frozen input).
/// Returns [Σ output_splits, ...] in input's dtype.
at::Tensor all_to_all_rows(const at::Tensor& input, const std::vector<int64_t>& output_splits,
                           const std::vector<int64_t>& input_splits, const std::shared_ptr<Communicator>& comm,
                           const at::Tensor& anchor = at::Tensor());

}  // namespace moe
