// Data parallelism: gradients of replicated parameters summed over the ranks that hold them, in
// buckets, and the gradient norm of the whole (sharded) model.
//   non-expert parameters (name without an "experts.<id>." segment): summed over groups.world;
//   expert parameters: summed over groups.expert_data (the ranks holding the same experts). The
//   expert-parallel exchange has already added every rank's tokens into them.
// Sums, not means: the trainer divides its loss by the target tokens of the whole update over all
// ranks (fairseq's sample_size), so the sum is the gradient of the global loss. Buckets are filled in
// reverse registration order (roughly the order backward produces gradients), flattened, and all
// launched before the first wait, so their transfers overlap one another; they start after backward
// (LibTorch's C++ API has no post-accumulation gradient hook to start them during it).
#pragma once

#include <ATen/core/Tensor.h>

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

  /// Sums the gradients as described above (undefined gradients count as zeros).
  void synchronize();
  /// L2 norm of all gradients of the model: replicated parameters once, each expert once.
  double global_norm() const;
  /// Scales every gradient by min(1, max_norm / (norm + 1e-6)) (torch.nn.utils.clip_grad_norm_);
  /// returns the norm before clipping.
  double clip(double max_norm);

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  struct Bucket {
    std::vector<at::Tensor> params;
    bool expert = false;
    int64_t numel = 0;
  };
  std::vector<Bucket> buckets_;
  std::vector<at::Tensor> dense_, experts_;
  ParallelGroups groups_;
};

}  // namespace moe
