// Builds the DispatchLayout: a stable counting sort of (token, slot) assignments by expert id, with
// per-expert capacity applied in priority order (see moe/ops/layout.h).
#include "moe/ops/layout.h"

#include <ATen/ATen.h>

#include <vector>

#include "moe/core/build_config.h"
#include "moe/core/error.h"
#include "ops/device_check.h"
#if MOE_WITH_CUDA
#include "ops/cuda/ops_cuda.h"
#endif

namespace moe {

DispatchLayout build_layout(const at::Tensor& expert_index, int64_t num_experts, int64_t capacity,
                            const at::Tensor& priority) {
  MOE_CHECK(expert_index.defined(), "build_layout: expert_index is undefined");
  MOE_CHECK(expert_index.dim() == 2, "build_layout: expert_index must be [T, K], got shape ",
            expert_index.sizes());
  MOE_CHECK(expert_index.scalar_type() == at::kLong, "build_layout: expert_index must be int64, got ",
            expert_index.scalar_type());
  detail::check_op_device(expert_index, "build_layout", "expert_index");
  MOE_CHECK(num_experts >= 1, "build_layout: num_experts must be >= 1, got ", num_experts);
  MOE_CHECK(capacity >= -1, "build_layout: capacity must be >= 0 or -1 (unlimited), got ", capacity);
  const int64_t T = expert_index.size(0);
  const int64_t K = expert_index.size(1);
  if (priority.defined()) {
    MOE_CHECK(priority.sizes() == expert_index.sizes(), "build_layout: priority must have expert_index's shape ",
              expert_index.sizes(), ", got ", priority.sizes());
    MOE_CHECK(at::isFloatingType(priority.scalar_type()), "build_layout: priority must be floating, got ",
              priority.scalar_type());
    MOE_CHECK(priority.device() == expert_index.device(), "build_layout: priority must be on expert_index's device ",
              expert_index.device(), ", got ", priority.device());
  }
#if MOE_WITH_CUDA
  if (expert_index.is_cuda()) return detail::cuda::build_layout(expert_index, num_experts, capacity, priority);
#endif

  auto ids_tensor = expert_index.contiguous();
  const int64_t* ids = ids_tensor.data_ptr<int64_t>();

  // Validate ids and count requests per expert; last_token catches a token naming an expert twice
  // in O(T·K + E).
  std::vector<int64_t> requested(num_experts, 0);
  std::vector<int64_t> last_token(num_experts, -1);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = ids[t * K + k];
      if (e == -1) continue;
      MOE_CHECK(e >= 0 && e < num_experts, "build_layout: expert_index[", t, ", ", k, "] = ", e,
                " is outside [-1, ", num_experts, ")");
      MOE_CHECK(last_token[e] != t, "build_layout: token ", t, " names expert ", e, " twice");
      last_token[e] = t;
      ++requested[e];
    }
  }

  auto long_opts = at::TensorOptions().dtype(at::kLong);
  auto tokens_per_expert = at::empty({num_experts}, long_opts);
  auto expert_offsets = at::empty({num_experts + 1}, long_opts);
  int64_t* kept = tokens_per_expert.data_ptr<int64_t>();
  int64_t* offsets = expert_offsets.data_ptr<int64_t>();
  offsets[0] = 0;
  for (int64_t e = 0; e < num_experts; ++e) {
    kept[e] = capacity < 0 ? requested[e] : std::min(requested[e], capacity);
    offsets[e + 1] = offsets[e] + kept[e];
  }
  const int64_t N = offsets[num_experts];

  auto row_token = at::empty({N}, long_opts);
  auto row_slot = at::empty({N}, long_opts);
  auto slot_row = at::full({T, K}, -1, long_opts);
  int64_t* rt = row_token.data_ptr<int64_t>();
  int64_t* rs = row_slot.data_ptr<int64_t>();
  int64_t* sr = slot_row.data_ptr<int64_t>();
  std::vector<int64_t> cursor(num_experts, 0);
  int64_t dropped = 0;

  // Visit assignments in priority order: flat index f = k * T + t (rank-major, then token).
  auto place = [&](int64_t f) {
    const int64_t k = f / T, t = f % T;
    const int64_t e = ids[t * K + k];
    if (e < 0) return;
    if (cursor[e] < kept[e]) {
      const int64_t row = offsets[e] + cursor[e]++;
      rt[row] = t;
      rs[row] = k;
      sr[t * K + k] = row;
    } else {
      ++dropped;
    }
  };
  if (!priority.defined()) {
    for (int64_t f = 0; f < T * K; ++f) place(f);
  } else {
    // Stable sort of the rank-major flattening keeps rank-major FCFS order among equal keys.
    auto keys = priority.to(at::kDouble).transpose(0, 1).contiguous().reshape({-1});
    auto order = std::get<1>(keys.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false)).contiguous();
    const int64_t* o = order.data_ptr<int64_t>();
    for (int64_t i = 0; i < T * K; ++i) place(o[i]);
  }

  DispatchLayout layout;
  layout.num_tokens = T;
  layout.top_k = K;
  layout.num_experts = num_experts;
  layout.capacity = capacity;
  layout.tokens_per_expert = tokens_per_expert;
  layout.requested_per_expert = at::tensor(requested, long_opts);
  layout.expert_offsets = expert_offsets;
  layout.row_token = row_token;
  layout.row_slot = row_slot;
  layout.slot_row = slot_row;
  layout.num_dropped = at::scalar_tensor(dropped, long_opts);
  return layout;
}

}  // namespace moe
