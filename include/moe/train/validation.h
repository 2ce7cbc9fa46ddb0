// Validation of a translation run: label-smoothed loss and NLL per target token on every
// direction's validation split, the MoE statistics of that pass (experts per token per layer, which
// parameter counts use) and the expert-usage heatmaps. Runs under a ScopedSeed derived from (seed,
// step): the same draws on every rank (SMoE's sampled second expert, THOR's random expert), never
// touching the training stream.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <map>
#include <string>

#include "moe/data/translation_data.h"
#include "moe/models/transformer.h"
#include "moe/parallel/communicator.h"

namespace moe {

struct ValidationResult {
  double loss = 0, nll = 0;  ///< per target token over all directions
  std::map<std::string, double> loss_per_direction;
  std::map<std::string, double> experts_per_token;  ///< per MoE layer
  /// layer -> direction -> rows per expert ([E] fp64 CPU), for the heatmaps
  std::map<std::string, std::map<std::string, at::Tensor>> usage;
};

struct ValidationOptions {
  int64_t max_tokens = 4096;  ///< tokens per batch
  double label_smoothing = 0.1;
  uint64_t seed = 1;  ///< with the step, seeds the scope's generators
  int64_t step = 0;
};

/// Every rank of `world` must call it (expert parallelism needs every rank in every layer call);
/// they compute the same batches, and rank 0's loss is broadcast so that the ranks agree exactly.
ValidationResult validate_translation(TransformerModel& model, const TranslationData& data,
                                      const ValidationOptions& options, const at::Device& device, Communicator& world);

}  // namespace moe
