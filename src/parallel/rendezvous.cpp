// Where a process stands in a multi-process run (the environment reader) and where processes meet
// (the TCP store of the gloo and nccl backends); see moe/parallel/rendezvous.h.
#include "moe/parallel/rendezvous.h"

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "moe/core/error.h"
#include "moe/parallel/communicator.h"
#include "parallel/backends.h"

namespace moe {
namespace {

int parse_int(const std::string& name, const std::string& value) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(value.c_str(), &end, 10);
  MOE_CHECK(!value.empty() && end != nullptr && *end == '\0' && errno == 0 && v >= INT32_MIN && v <= INT32_MAX,
            "environment variable ", name, "='", value, "' is not an integer");
  return static_cast<int>(v);
}

}  // namespace

namespace detail {

c10::intrusive_ptr<c10d::Store> make_tcp_store(const CommunicatorOptions& options, const DistributedEnv& env,
                                               const std::string& backend) {
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = env.world_size;
    so.waitWorkers = true;
    so.timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000.0));
    return c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    MOE_THROW(backend, " rendezvous at MASTER_ADDR=", env.master_addr, " MASTER_PORT=", env.master_port, " (rank ",
              env.rank, " of ", env.world_size, ", timeout ", options.timeout_s, " s) failed: ", e.what());
  }
}

}  // namespace detail

DistributedEnv read_distributed_env(const std::map<std::string, std::string>* vars) {
  auto get = [&](const char* name) -> std::string {
    if (vars != nullptr) {
      auto it = vars->find(name);
      return it == vars->end() ? std::string() : it->second;
    }
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
  };
  DistributedEnv env;
  struct Scheme {
    const char *source, *rank, *size, *local;
  };
  const Scheme schemes[] = {{"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
                            {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
                            {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"}};
  for (const auto& s : schemes) {
    const auto rank = get(s.rank), size = get(s.size);
    if (rank.empty() && size.empty()) continue;
    MOE_CHECK(!rank.empty() && !size.empty(), "environment: ", s.rank, " and ", s.size, " must be set together (",
              s.rank, "='", rank, "', ", s.size, "='", size, "')");
    env.source = s.source;
    env.rank = parse_int(s.rank, rank);
    env.world_size = parse_int(s.size, size);
    const auto local = get(s.local);
    env.local_rank = local.empty() ? 0 : parse_int(s.local, local);
    MOE_CHECK(env.world_size >= 1, "environment variable ", s.size, "=", env.world_size, " must be >= 1");
    MOE_CHECK(env.rank >= 0 && env.rank < env.world_size, "environment variable ", s.rank, "=", env.rank,
              " must be in [0, ", s.size, "=", env.world_size, ")");
    MOE_CHECK(env.local_rank >= 0, "environment variable ", s.local, "=", env.local_rank, " must be >= 0");
    break;
  }
  const auto addr = get("MASTER_ADDR"), port = get("MASTER_PORT");
  if (!addr.empty()) env.master_addr = addr;
  MOE_CHECK(env.world_size == 1 || !addr.empty(), "environment: MASTER_ADDR must be set for a world of ",
            env.world_size, " processes (", env.source, "); moe-launch sets it, or export the first host's name");
  if (!port.empty()) {
    env.master_port = parse_int("MASTER_PORT", port);
    MOE_CHECK(env.master_port >= 1 && env.master_port <= 65535, "environment variable MASTER_PORT=", env.master_port,
              " must be in 1..65535");
  }
  return env;
}

}  // namespace moe
