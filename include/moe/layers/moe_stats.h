// MoEStats: what one FFN-slot call did with its tokens (loads per expert, drops, experts and routing
// passes per token, aux losses). Counts are kept as tensors where they were computed (no host read
// until someone prints them); the rates are derived from the counts by finalize(), so merging the
// statistics of several calls (SMoE's passes, a training window's micro-batches, a validation set)
// is a sum of counts: merge_stats.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "moe/routing/router.h"

namespace moe {

struct MoEStats {
  int64_t num_tokens = 0;           ///< T: rows the slot received (padding included)
  at::Tensor padding;               ///< [] int64, padding rows among them (masked: no expert); rates count the rest
  at::Tensor tokens_per_expert;     ///< [E] int64, rows each expert processed (after capacity)
  at::Tensor requested_per_expert;  ///< [E] int64, assignments before capacity
  at::Tensor selected;              ///< [] int64, assignments the router(s) selected (before capacity)
  at::Tensor dropped;               ///< [] int64, assignments dropped by capacity
  at::Tensor token_passes;          ///< [] int64, Σ over real tokens of the routing passes each took
  at::Tensor experts_per_token_histogram;     ///< [K_max + 1] int64: tokens processed by 0, 1, ... experts
  std::map<std::string, AuxLoss> aux_losses;  ///< by name, e.g. "balance", "z"

  // Derived from the counts by finalize():
  at::Tensor dropped_fraction;    ///< [] fp32, dropped / selected (0 when nothing was selected)
  at::Tensor experts_per_token;   ///< [] fp32, mean experts that processed a real token (after capacity)
  at::Tensor selected_per_token;  ///< [] fp32, mean experts selected per real token (before capacity)
  at::Tensor passes_per_token;    ///< [] fp32, routing passes per real token (SMoE's requested capacity; 1 otherwise)

  /// Recomputes the derived rates from the counts.
  void finalize();
  /// Expert FLOPs per token relative to top-k over the same experts: experts_per_token / k.
  double relative_expert_flops(int64_t k) const;
  /// Σ coefficient · value over aux_losses with a non-zero coefficient: a 0-dim tensor to add to the
  /// objective (0 if none).
  at::Tensor total_aux_loss() const;
  /// One line: "tokens=.. dropped=..% experts/token=.. balance=.. z=.. load=[..]" (reads the tensors).
  std::string to_string() const;
};

/// Statistics of calls over different tokens, as if one call had seen them all: counts and
/// histograms summed (a shorter histogram is padded), rates recomputed, each aux loss the mean over
/// the parts that carry it (SMoE averages its balance loss over the executed passes). Parts must
/// have the same number of experts. An empty list gives stats of zero tokens.
MoEStats merge_stats(const std::vector<MoEStats>& parts);

/// The statistics of a dense FFN over T tokens, as one "expert" taking every token.
MoEStats dense_stats(int64_t num_tokens, const at::TensorOptions& counts_options = {});

}  // namespace moe
