// Expert-parallel exchange (see moe/layers/expert_parallel.h).
#include "moe/layers/expert_parallel.h"

#include <ATen/ATen.h>

#include <vector>

#include "moe/core/error.h"
#include "moe/parallel/all_to_all.h"

namespace moe {

ExpertShard expert_shard(int64_t num_experts, const Communicator* group, const std::string& owner) {
  const int64_t P = group == nullptr ? 1 : group->size();
  MOE_CHECK(num_experts % P == 0, owner, ": num_experts=", num_experts,
            " must be divisible by the expert-parallel size ", P, " (experts are sharded evenly by global id)");
  const int64_t per = num_experts / P;
  return {group == nullptr ? 0 : group->rank() * per, per};
}

at::Tensor run_experts(ExpertBankImpl& bank, const at::Tensor& packed, const at::Tensor& tokens_per_expert,
                       const std::shared_ptr<Communicator>& group, const at::Tensor& anchor) {
  if (group == nullptr || group->size() == 1) return bank.forward(packed, tokens_per_expert);
  const int64_t P = group->size(), E = tokens_per_expert.numel(), El = bank.options.num_local_experts;
  MOE_CHECK(E == El * P, "run_experts: tokens_per_expert has ", E, " experts but the group of ", P, " ranks holds ",
            El, " each");
  auto counts = tokens_per_expert.to(at::kLong).contiguous();
  // Who sends what to whom: recv_counts[q][e] = rows rank q sends for my local expert e.
  auto recv_counts = at::empty({E}, counts.options());  // [P·El]: row q = what rank q sends me
  group->all_to_all_single(recv_counts, counts, std::vector<int64_t>(P, El), std::vector<int64_t>(P, El));
  const int64_t* c = counts.data_ptr<int64_t>();
  const int64_t* rc = recv_counts.data_ptr<int64_t>();
  std::vector<int64_t> send_splits(P, 0), recv_splits(P, 0), rows_per_local(El, 0);
  for (int64_t q = 0; q < P; ++q)
    for (int64_t e = 0; e < El; ++e) {
      send_splits[q] += c[q * El + e];
      recv_splits[q] += rc[q * El + e];
      rows_per_local[e] += rc[q * El + e];
    }
  auto received = all_to_all_rows(packed, recv_splits, send_splits, group, anchor);  // [R, d], [q][e] order
  const int64_t R = received.size(0);
  // [source rank][local expert] -> [local expert][source rank].
  at::Tensor out;
  if (R == 0) {
    // Nothing to compute, but the result must stay connected to `received`: both exchanges are
    // collectives that every rank has to enter in backward too.
    out = received;
  } else if (El == 1) {
    out = bank.forward(received, at::tensor(rows_per_local, at::kLong));
  } else {
    std::vector<int64_t> block_start(P * El, 0);
    int64_t offset = 0;
    for (int64_t q = 0; q < P; ++q)
      for (int64_t e = 0; e < El; ++e) {
        block_start[q * El + e] = offset;
        offset += rc[q * El + e];
      }
    auto perm = at::empty({R}, at::kLong);
    auto* p = perm.data_ptr<int64_t>();
    int64_t i = 0;
    for (int64_t e = 0; e < El; ++e)
      for (int64_t q = 0; q < P; ++q)
        for (int64_t j = 0; j < rc[q * El + e]; ++j) p[i++] = block_start[q * El + e] + j;
    auto inverse = at::empty_like(perm);
    inverse.index_put_({perm}, at::arange(R, at::kLong));
    const auto device = packed.device();
    auto expert_major = received.index_select(0, perm.to(device));
    out = bank.forward(expert_major, at::tensor(rows_per_local, at::kLong)).index_select(0, inverse.to(device));
  }
  // Every rank sends back rows of the same dtype (under autocast the experts may return another one,
  // and a rank without rows returns what it received).
  return all_to_all_rows(out.to(packed.scalar_type()), send_splits, recv_splits, group, anchor);  // packed order
}

}  // namespace moe
