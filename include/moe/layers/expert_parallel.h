// Expert parallelism for one MoE layer: experts sharded by global id over an expert-parallel group
// of P processes (rank r holds experts [r·E/P, (r+1)·E/P)), and the exchange that takes the rows a
// rank packed for every global expert (DispatchLayout order) to the ranks holding those experts and
// brings the outputs back, forward and backward (GShard's dispatch/combine all-to-alls; Lepikhin et
// al. 2020, §2.2; DeepSpeed-MoE and Megatron-Core do the same with variable splits).
//
// Per layer call and rank: one all-to-all of the per-expert counts ([P, E/P] int64 on the host:
// split sizes must be known on the host to size the buffers), the rows' all-to-all-v, the local
// experts over their contiguous segments, and the reverse all-to-all-v. Received rows arrive ordered
// [source rank][local expert] and are permuted to [local expert][source rank] for the ExpertBank,
// then back. Capacity is whatever the router computed from the rank's own tokens (local counts): an
// expert receives at most P·C rows in one call.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

#include "moe/layers/expert_bank.h"
#include "moe/parallel/communicator.h"

namespace moe {

struct ExpertShard {
  int64_t first = 0;  ///< global id of the first expert held here
  int64_t count = 0;  ///< experts held here
};

/// The shard of `num_experts` that this rank of `group` holds (all of them for a null group or a
/// group of one). Throws moe::Error naming `owner` when num_experts is not divisible by the size.
ExpertShard expert_shard(int64_t num_experts, const Communicator* group, const std::string& owner);

/// Runs packed rows through their experts wherever they live and returns the outputs in the same
/// order. packed: [N, d] floating, grouped by global expert; tokens_per_expert: [E] int64 CPU (rows
/// per global expert, summing to N). `bank` holds this rank's shard. group: null or size 1 runs the
/// bank directly. anchor: see all_to_all_rows (a 0-dim tensor requiring grad, per layer).
at::Tensor run_experts(ExpertBankImpl& bank, const at::Tensor& packed, const at::Tensor& tokens_per_expert,
                       const std::shared_ptr<Communicator>& group, const at::Tensor& anchor);

}  // namespace moe
