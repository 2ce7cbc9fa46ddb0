// The checkpoint of a translation run: one format for one or many processes, loadable at any world
// and expert-parallel size. A checkpoint is named state (moe/train/sharded_state.h): the model's
// parameters and buffers by name (experts by global id), the optimizer's moments by parameter name,
// and the run's own entries:
//   trainer.format      2 (1: written before the one-format rebuild; still read, see below)
//   trainer.step, trainer.best_valid, trainer.elapsed_s
//   trainer.config      the resolved configuration (TOML)      trainer.tokenizer  the SentencePiece model
//   trainer.batcher     the batcher's exact-resume state       trainer.rng_cpu / trainer.rng_cuda: every
//                                                               rank's generator states, [W, bytes]
// Files in the run folder: checkpoint-<step>.moeckpt (+ .experts-<i>-of-<P>.moeckpt shards when the
// experts were sharded over P > 1 processes), best.moeckpt (+ shards): atomic, checksummed
// (moe/train/checkpoint_file.h). Checkpoints written by a single process before format 2 (one
// LibTorch archive with "model" and "optimizer" entries) are converted when read.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "moe/data/tokenizer.h"
#include "moe/models/transformer.h"
#include "moe/parallel/process_groups.h"
#include "moe/train/config.h"
#include "moe/train/sharded_state.h"

namespace moe {

inline constexpr int64_t kRunCheckpointFormat = 2;

/// A checkpoint read and verified: its entries (the expert entries `wanted` accepts), configuration
/// and tokenizer.
struct OpenedCheckpoint {
  NamedState state;
  RunConfig config;
  SentencePieceTokenizer tokenizer;
  int64_t step = 0;
  int64_t format = kRunCheckpointFormat;
  int64_t writer_world_size = 1;  ///< processes that wrote it (rows of trainer.rng_cpu)
};

/// Reads `path` (a checkpoint-<step>.moeckpt or best.moeckpt, with its shards). Throws moe::Error
/// naming the file when it is missing, truncated, corrupted, not a checkpoint, or of an unknown format.
OpenedCheckpoint open_run_checkpoint(
    const std::string& path, const std::function<bool(int64_t)>& wanted = [](int64_t) { return true; });

/// Collective over groups.world: writes <run_dir>/checkpoint-<step>.moeckpt (and best.moeckpt when
/// `best`), removes shard files the new save does not own, and keeps the newest `keep_last` step
/// checkpoints. `state` holds every entry listed above (this process's shard of the experts).
void save_run_checkpoint(const std::string& run_dir, int64_t step, const NamedState& state,
                         const ParallelGroups& groups, bool best, int64_t keep_last);

/// Removes a step checkpoint: its file and every expert shard beside it.
void remove_run_checkpoint(const std::string& path);

/// The step a checkpoint file was written at, read from its shared file alone (no tensors loaded).
int64_t read_checkpoint_step(const std::string& path);

/// A resumed run's step checkpoints after `step` belong to an abandoned continuation: moves them (with
/// their shards) into a new folder run_dir/set-aside-<date>-<time>/ and returns its path, or deletes
/// them when `discard`; "" when there are none. Logs what it did.
std::string set_aside_later_checkpoints(const std::string& run_dir, int64_t step, bool discard);

/// Makes best.moeckpt hold the model of `best_step` (the best validation a checkpoint records): when
/// it holds another step (a kill between the step checkpoint and best.moeckpt, or an abandoned
/// continuation), copies checkpoint-<best_step> over it, the replaced one going to `set_aside_dir`
/// when given. best_step < 0 (nothing recorded): nothing to do. Logs what it did.
void repair_best_checkpoint(const std::string& run_dir, int64_t best_step, const std::string& set_aside_dir = "");

/// The model options of a run's configuration for a tokenizer's vocabulary.
TransformerOptions model_options_for(const RunConfig& config, const SentencePieceTokenizer& tokenizer);

/// A model restored from a checkpoint for translation (moe-translate), every expert in this process.
struct LoadedModel {
  RunConfig config;
  SentencePieceTokenizer tokenizer;
  TransformerModel model{nullptr};
  int64_t step = 0;
};
/// device: "cpu", "cuda" or "cuda:N".
LoadedModel load_model_checkpoint(const std::string& path, const std::string& device = "cpu");

/// Every expert of `model` gathered into one model on world rank 0: collective over groups.expert,
/// in the model's parameter order (the same on every rank). Returns `model` itself when it already
/// holds every expert (expert-parallel size 1) and on the other ranks. `options`: the model's own
/// options (to build the full model), num_experts: E per layer. Does not move the random streams.
TransformerModel gather_experts(TransformerModel& model, const ParallelGroups& groups,
                                const TransformerOptions& options, int64_t num_experts);

/// "cpu", "cuda", "cuda:N" as a device; throws moe::Error naming `key` when malformed or when CUDA is
/// not usable here.
at::Device parse_run_device(const std::string& name, const std::string& key = "train.device");

}  // namespace moe
