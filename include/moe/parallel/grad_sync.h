// Data parallelism: gradients of replicated parameters summed over the ranks that hold them, in
// buckets, and the gradient norm of the whole (sharded) model.
//   non-expert parameters (name without an "experts.<id>." segment): summed over groups.world;
//   expert parameters: summed over groups.expert_data (the ranks holding the same experts). The
//   expert-parallel exchange has already added every rank's tokens into them.
// Sums, not means: the trainer divides its loss by the target tokens of the whole update over all
// ranks (fairseq's sample_size), so the sum is the gradient of the global loss.
//
// Overlap with backward (as PyTorch DDP's reducer does it): buckets are filled in reverse
// registration order (roughly the order backward produces gradients); a post-hook on each
// parameter's gradient accumulator counts the bucket down during the last backward of an update
// (arm() first), and a complete bucket is flattened and its all-reduce started while backward goes on.
// Buckets start strictly in order (a bucket waits for the ones before it), so every rank issues the
// collectives in the same order even when a parameter receives no gradient on some rank (an expert
// with no tokens there); synchronize() starts whatever is left and waits for everything.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "moe/parallel/process_groups.h"

namespace moe {

class GradientSynchronizer {
 public:
  /// named_parameters: the model's (name, parameter) pairs; bucket_mb > 0.
  GradientSynchronizer(const std::vector<std::pair<std::string, at::Tensor>>& named_parameters, ParallelGroups groups,
                       double bucket_mb);
  ~GradientSynchronizer();
  GradientSynchronizer(const GradientSynchronizer&) = delete;
  GradientSynchronizer& operator=(const GradientSynchronizer&) = delete;

  /// Call before the update's last backward: buckets then start as soon as their gradients are final.
  void arm();
  /// Sums the gradients as described above (undefined gradients count as zeros): starts the buckets
  /// not started during backward, waits for all, and writes the sums back.
  void synchronize();
  /// Buckets whose all-reduce started during the last backward (for tests and reports).
  int64_t started_during_backward() const { return started_early_; }
  /// L2 norm of all gradients of the model: replicated parameters once, each expert once.
  /// = norm_from_squares(local_squares().cpu()).
  double global_norm() const;
  /// This rank's squared gradient sums, [2] fp64 on the parameters' device: {experts held here,
  /// replicated parameters}. No device-to-host read: a caller can fold it into a read of its own.
  at::Tensor local_squares() const;
  /// The global norm from local_squares() read to the host ([2] fp64 CPU, contiguous; its expert
  /// entry is all-reduced over the expert group in place).
  double norm_from_squares(at::Tensor host_squares) const;
  /// Scales every gradient by min(1, max_norm / (norm + 1e-6)) (torch.nn.utils.clip_grad_norm_);
  /// returns the norm before clipping.
  double clip(double max_norm);
  /// clip() with the norm already computed (global_norm()), saving a second pass.
  void clip(double max_norm, double norm);

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  struct Bucket {
    std::vector<at::Tensor> params;
    bool expert = false;
    int64_t numel = 0;
    int64_t pending = 0;  ///< parameters not yet accumulated in this backward
    at::Tensor flat;      ///< the bucket's gradients, flattened, while in flight
    std::unique_ptr<CommWork> work;
    bool started = false;
  };
  void on_accumulated(size_t bucket);
  void start(size_t bucket);
  std::vector<Bucket> buckets_;
  size_t next_to_start_ = 0;
  bool armed_ = false;
  int64_t started_early_ = 0;
  std::vector<std::pair<std::shared_ptr<void>, uintptr_t>> hooks_;  ///< (accumulator, hook key)
  std::vector<at::Tensor> dense_, experts_;
  ParallelGroups groups_;
};

}  // namespace moe
