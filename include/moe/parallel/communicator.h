// Communicator: the collectives that expert and data parallelism need (all-to-all-v, all-reduce,
// all-gather, broadcast, barrier), behind one interface with three backends:
//   local  world size 1, no other process (every collective is a copy or a no-op);
//   gloo   LibTorch's c10d Gloo process group, CPU tensors, TCP between processes;
//   nccl   the NCCL library itself (grouped ncclSend/ncclRecv for all-to-all-v) on the current CUDA
//          stream; compiled only with the CUDA tier.
// Processes meet through a TCP store at MASTER_ADDR:MASTER_PORT (torchrun's conventions; see
// moe/parallel/rendezvous.h). Every collective honours the communicator's timeout: a peer that
// died or hangs makes it throw moe::Error naming the group, the operation and the rank, never hang.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moe {

struct DistributedEnv;

enum class ReduceOp { kSum, kMin, kMax };

/// A collective in flight (all_reduce_async); wait() returns when the result is in place.
class CommWork {
 public:
  virtual ~CommWork() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual std::string backend() const = 0;  ///< "local", "gloo" or "nccl"
  virtual int rank() const = 0;             ///< this process's rank in the group, [0, size)
  virtual int size() const = 0;             ///< processes in the group
  /// The group's name in messages ("world", "expert-parallel 0", ...).
  const std::string& name() const { return name_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  /// All-to-all with row splits (all_to_all_single of c10d).
  /// input:  [Σ input_splits, ...] contiguous; rows input_splits[0] go to rank 0, the next
  ///         input_splits[1] to rank 1, ... (size() entries, each >= 0).
  /// output: [Σ output_splits, ...], same dtype/trailing shape/device, preallocated; receives
  ///         output_splits[q] rows from rank q, in rank order.
  virtual void all_to_all_single(at::Tensor& output, const at::Tensor& input,
                                 const std::vector<int64_t>& output_splits,
                                 const std::vector<int64_t>& input_splits) = 0;
  /// In place over the group; tensor contiguous, any numeric dtype.
  virtual void all_reduce(at::Tensor& tensor, ReduceOp op = ReduceOp::kSum) = 0;
  /// Starts an in-place sum all-reduce; the tensor must stay alive and untouched until wait().
  virtual std::unique_ptr<CommWork> all_reduce_async(at::Tensor& tensor) = 0;
  /// True when all_reduce_async returns before the transfer ends, so that it may be started from
  /// inside backward (gloo); false when it blocks (nccl here), where starting it mid-backward could
  /// wait on a peer that is itself waiting in the expert exchange.
  virtual bool supports_overlap() const { return true; }
  /// input [...] contiguous, the same shape on every rank -> [size(), ...].
  virtual at::Tensor all_gather(const at::Tensor& input) = 0;
  /// In place: every rank receives `root`'s tensor (same shape and dtype on every rank).
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;

  /// A communicator over `ranks` (ranks of this group, ascending, this rank among them), named
  /// `name`. Called by exactly the members of the new group; groups with the same name must have
  /// the same members.
  virtual std::shared_ptr<Communicator> subgroup(const std::vector<int>& ranks, const std::string& name) = 0;

 protected:
  std::string name_ = "world";
  std::chrono::milliseconds timeout_{std::chrono::minutes(5)};
};

struct CommunicatorOptions {
  std::string backend = "local";  ///< local | gloo | nccl
  double timeout_s = 300;         ///< every collective and the rendezvous, > 0
  void validate(const std::string& owner = "CommunicatorOptions") const;
};

/// The backends compiled into this build ("local", "gloo", and "nccl" with the CUDA tier).
std::vector<std::string> available_backends();

/// The world communicator: `local` needs world size 1; `gloo` and `nccl` meet through a TCP store at
/// env.master_addr:env.master_port (rank 0 serves it). Throws moe::Error naming the backend when it
/// is not in this build, and the address and timeout when the rendezvous fails.
std::shared_ptr<Communicator> make_communicator(const CommunicatorOptions& options, const DistributedEnv& env);

/// A world-size-1 communicator (what single-process code uses).
std::shared_ptr<Communicator> make_local_communicator();

}  // namespace moe
