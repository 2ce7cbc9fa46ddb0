// Checkpoints of expert-parallel models that load into any other world or expert-parallel size.
// State entries (parameters, buffers, optimizer moments) are keyed by name; a name with an
// "experts.<id>." segment belongs to global expert <id> (ExpertBank names experts by global id), so
// where an expert lived when it was saved does not matter when it is loaded:
//   <prefix>.moeckpt                      every entry without an expert id (+ metadata), by world rank 0
//   <prefix>.experts-<i>-of-<P>.moeckpt   the expert entries of expert-group position i, by the first
//                                         rank of its expert-data group
// When every process holds every expert (expert-parallel size 1, one process included) the expert
// entries are written inline in <prefix>.moeckpt and there are no shard files.
// Files go through write_checkpoint_file (atomic, checksummed). Loading reads the shared file and
// every shard file named in it, keeping the expert entries the caller asks for.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <functional>
#include <map>
#include <string>

#include "moe/parallel/process_groups.h"

namespace moe {

using NamedState = std::map<std::string, at::Tensor>;

/// Parameters and buffers of `module` by name (detached; not copied).
NamedState module_state(const torch::nn::Module& module);
/// Copies `state` into `module`'s parameters and buffers. Throws moe::Error naming `source` and the
/// entry when one of the module's entries is missing or has another shape; extra entries are ignored.
void load_module_state(torch::nn::Module& module, const NamedState& state, const std::string& source);

/// Collective over groups.world: writes `state` (CPU copies) as described above, the shards first and
/// the shared file last (so a listed checkpoint is complete); returns when every file is complete.
/// `tag` (e.g. "step 1200") goes into every file: loading refuses shards from another save.
void save_sharded_state(const std::string& prefix, const NamedState& state, const ParallelGroups& groups,
                        const std::string& tag = "");

/// Reads a checkpoint written by save_sharded_state with any expert-parallel size: every non-expert
/// entry and the expert entries whose id `wanted` accepts. Throws moe::Error naming the file when one
/// is missing, truncated or corrupted.
NamedState load_sharded_state(const std::string& prefix, const std::function<bool(int64_t)>& wanted);

/// Text stored as a uint8 tensor [bytes] (configs, tokenizers, tags in checkpoints), and back.
at::Tensor string_tensor(const std::string& text);
std::string tensor_string(const at::Tensor& bytes);

/// "<prefix>.moeckpt" and "<prefix>.experts-<i>-of-<P>.moeckpt".
std::string shared_state_path(const std::string& prefix);
std::string expert_shard_path(const std::string& prefix, int position, int expert_parallel_size);

}  // namespace moe
