// The experiment record of a translation run: every setting of data, tokenizer, model, MoE slots,
// training and evaluation, read from TOML (configs/*.toml, parsed by toml++), overridable key by
// key from the command line, validated, logged, and saved with every checkpoint.
//
// Keys are "<section>.<name>" (e.g. model.d_model, moe.variant); `config_fields` lists them once,
// with their help text, type and allowed range: the TOML reader, the --<section>.<name> options of
// the programs, --dump-config and validate() all come from that list. The moe.* router keys come from
// the router option list (moe/routing/router_options.h); a router of your own reads its settings
// from the [moe.router] table (any key; RouterOptions::extra).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "moe/core/option_fields.h"
#include "moe/data/translation_data.h"
#include "moe/eval/evaluate.h"
#include "moe/models/transformer.h"

namespace moe {

struct TrainingConfig {
  double lr = 5e-4;
  int64_t warmup = 4000;
  double warmup_init_lr = 1e-7;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.98;
  double adam_eps = 1e-8;
  double weight_decay = 0.0;  ///< decoupled (AdamW), as fairseq's Adam
  double clip_norm = 0.0;     ///< 0 = no clipping
  double label_smoothing = 0.1;
  int64_t update_freq = 1;   ///< micro-batches per update (gradient accumulation)
  int64_t max_steps = 1000;  ///< updates
  double max_minutes = 0;    ///< wall-clock budget for training; 0 = none
  int64_t seed = 1;
  int64_t log_every = 20;          ///< progress line / metrics.jsonl record every N updates
  int64_t stats_every = 200;       ///< MoE statistics every N updates
  int64_t validate_every = 500;    ///< validation loss (and best checkpoint) every N updates
  int64_t checkpoint_every = 500;  ///< checkpoint every N updates (and at the end)
  int64_t keep_last = 2;           ///< step checkpoints kept (best.moeckpt is kept apart)
  std::string device = "cpu";      ///< cpu | cuda | cuda:N
  std::string precision = "fp32";  ///< fp32 | bf16 (autocast; CUDA only)
  int64_t threads = 0;             ///< intra-op threads; 0 = LibTorch's default
  /// Updates in a row with a non-finite loss or gradient (each skipped) after which the run stops.
  int64_t max_skipped_updates = 5;
  /// Early stopping (fairseq's --patience): the run ends after this many validations in a row without
  /// a better validation loss; 0 = never.
  int64_t patience = 0;
};

/// Multi-process training (moe-launch, Slurm, mpirun set the rank variables; see
/// docs/expert-parallel.md). Every rank must start with the same configuration (checked).
struct ParallelConfig {
  std::string backend = "local";     ///< local (one process) | gloo (CPU) | nccl (CUDA)
  int64_t expert_parallel_size = 1;  ///< P: ranks each MoE layer's experts are sharded over; divides W and E
  int64_t data_parallel_size = 0;    ///< replicas of the non-expert parameters: must equal the world size W (0 = W)
  double timeout_s = 300;            ///< every collective; a dead or hung rank fails the others after this
  double bucket_mb = 25;             ///< gradient all-reduce bucket size
};

struct RunConfig {
  std::string run_dir = "runs/default";  ///< where checkpoints, metrics and results go
  std::string log_level = "info";
  DataConfig data;
  TokenizerConfig tokenizer;
  TransformerOptions model;  ///< model.* keys, and moe.* for model.moe
  TrainingConfig train;
  ParallelConfig parallel;
  EvalConfig eval;

  /// Throws moe::Error naming the key ("train.lr must be > 0, got 0").
  void validate() const;
  /// Every key with its current value, as a TOML document with sections, one line per key; router
  /// keys left to the variant's preset appear as comments with the preset's value.
  std::string to_toml() const;
};

/// One configurable key (an OptionField whose key is "section.name", or "name" at the top level).
/// Router keys are optional: unset, they keep the variant's preset (`is_set` says which).
struct ConfigField : OptionField {
  std::function<bool()> is_set;  ///< null = always set
  std::function<void()> unset;   ///< optional keys: back to the variant's preset
};

/// The fields of `config` (the functions refer to it; keep it alive).
std::vector<ConfigField> config_fields(RunConfig& config);

/// Applies a TOML document (`origin` names it in errors: "<origin>:<line>: ..."). Unknown keys,
/// duplicate keys or tables, values of the wrong type and malformed TOML are errors.
void apply_toml(RunConfig& config, const std::string& toml, const std::string& origin);
/// apply_toml on a file's content; the file must be a readable, non-empty regular file.
void apply_toml_file(RunConfig& config, const std::string& path);
/// Sets one key from its textual value (a command-line override): "section.name", or
/// "moe.router.<name>" for a setting of a router of your own.
void set_config_value(RunConfig& config, const std::string& key, const std::string& value);

/// Throws moe::Error unless `theirs` (a checkpoint's configuration, read from `path`) describes the
/// same experiment as `mine`: data, tokenizer, model and moe keys must match (except where the data
/// lives and the test-set size); a changed schedule or optimizer key is logged as a warning;
/// reporting, parallel and eval keys may change freely.
void check_resume_compatible(const RunConfig& mine, const RunConfig& theirs, const std::string& path);

/// Loads the plugins of moe.plugins (moe/core/plugins.h) not loaded yet (a library of the same file
/// name counts as loaded). Throws moe::Error naming `context` (e.g. "checkpoint x.moeckpt") when one
/// cannot be loaded and the variant it should provide is not registered.
void load_run_plugins(const RunConfig& config, const std::string& context);

/// apply_toml for the configuration stored in a checkpoint of format 1, which spelled a few moe.*
/// keys differently: thor_eval_granularity (now eval_granularity), deterministic_eval (now
/// sample_in_eval = false), capacity_factor <= 0 and eval_token_fraction = -1 for "the variant's
/// default" (now: the key unset), and top_k written for variants whose k is fixed (now ignored).
void apply_format1_toml(RunConfig& config, const std::string& toml, const std::string& origin);

}  // namespace moe
