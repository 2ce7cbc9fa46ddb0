// The process groups of a run with expert and data parallelism (Megatron-Core's layout without
// tensor/pipeline parallelism): W processes, expert-parallel size P dividing W.
//   world        all W ranks; non-expert parameters are replicated, their gradients summed here;
//   expert       ranks [g·P, (g+1)·P): the experts of each MoE layer are sharded over these P ranks;
//   expert_data  ranks with the same position in their expert group (r mod P): they hold the same
//                experts, whose gradients are summed over this group (size W/P; 1 when P = W).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "moe/parallel/communicator.h"

namespace moe {

struct ParallelGroups {
  std::shared_ptr<Communicator> world;
  std::shared_ptr<Communicator> expert;
  std::shared_ptr<Communicator> expert_data;
  int expert_parallel_size() const { return expert ? expert->size() : 1; }
};

/// Parameter and state names: ExpertBank names experts by global id, so a name with an
/// "experts.<id>." segment belongs to expert <id> (reduced over expert_data, sharded in checkpoints).
/// Returns the id, or -1 for a non-expert name.
int64_t expert_id_of(const std::string& name);
/// `name` with its expert id replaced by `id` ("enc.ffn.experts.3.w1", 5 -> "enc.ffn.experts.5.w1").
std::string with_expert_id(const std::string& name, int64_t id);

/// Builds the groups over `world`; collective over every rank of it. Throws moe::Error naming
/// `owner` when P < 1 or W is not divisible by P.
ParallelGroups make_parallel_groups(const std::shared_ptr<Communicator>& world, int expert_parallel_size,
                                    const std::string& owner = "parallel.expert_parallel_size");

/// Collective: throws moe::Error on every rank when `text` (e.g. a resolved config) differs between
/// ranks, naming the first rank that differs from rank 0 and the first line where they differ.
void check_same_on_all_ranks(Communicator& world, const std::string& text, const std::string& what);

}  // namespace moe
