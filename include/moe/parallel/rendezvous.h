// Where a process stands in a multi-process run, read from the environment: torchrun's variables
// (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), else Open MPI's (OMPI_COMM_WORLD_RANK,
// OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK) or Slurm's (SLURM_PROCID, SLURM_NTASKS,
// SLURM_LOCALID). MASTER_ADDR/MASTER_PORT must be set for a world larger than one (moe-launch sets
// them; docs/expert-parallel.md shows sbatch and mpirun scripts that do).
#pragma once

#include <map>
#include <string>

namespace moe {

struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "default";  ///< "torchrun", "openmpi", "slurm" or "default" (no variables)
};

/// Reads the variables from `vars` (for tests) or, when null, the process environment. Throws
/// moe::Error naming the variable and its value when one is malformed or inconsistent (rank outside
/// [0, world size), a world larger than one without MASTER_ADDR, a port outside 1..65535).
DistributedEnv read_distributed_env(const std::map<std::string, std::string>* vars = nullptr);

}  // namespace moe
