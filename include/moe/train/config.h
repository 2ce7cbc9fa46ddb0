// The experiment record of a translation run: every setting of data, tokenizer, model, MoE slots,
// training and evaluation, read from TOML (configs/*.toml), overridable key by key from the command
// line, validated, logged, and saved with every checkpoint.
//
// Keys are "<section>.<name>" (e.g. model.d_model, moe.variant); `config_fields` lists them with
// their help text, which the command-line programs turn into --<section>.<name> options.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "moe/models/transformer.h"

namespace moe {

struct DataConfig {
  std::string corpus = "gettext";      ///< gettext (the default corpus, built here) | folder
  std::string root;                    ///< folder corpora: the root (pair or multi-way layout)
  std::string languages = "de,fr,es";  ///< the non-pivot languages, comma-separated
  std::string pivot = "en";
  /// pivot-xx (e.g. en→de), xx-pivot, both, or an explicit list such as "en-de,fr-en".
  std::string directions = "both";
  int64_t max_train_pairs = 0;                    ///< per direction; 0 = all
  int64_t max_valid_sentences = 500;              ///< per direction; 0 = all
  int64_t max_test_sentences = 0;                 ///< per direction; 0 = all
  int64_t max_line_bytes = 1024;                  ///< longer pairs are skipped and counted
  int64_t max_length = 128;                       ///< tokens per side; longer examples are skipped
  double temperature = 1.0;                       ///< direction sampling temperature (5 = OPUS-100-style flattening)
  int64_t max_tokens = 4096;                      ///< tokens per training micro-batch
  std::string locale_root = "/usr/share/locale";  ///< gettext corpus source
  std::string cache_dir = "runs/cache";           ///< built corpora and tokenizers, shared across runs
};

struct TokenizerConfig {
  int64_t vocab_size = 8000;
  std::string model_type = "unigram";
  double character_coverage = 1.0;
  int64_t input_sentence_size = 1000000;
};

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

struct EvalConfig {
  bool enabled = true;         ///< evaluate the test split after training
  std::string split = "test";  ///< test | valid
  int64_t beam = 5;            ///< 1 = greedy
  double lenpen = 1.0;
  double max_len_a = 1.2;  ///< hypotheses at most a·source_length + b tokens
  int64_t max_len_b = 10;
  int64_t max_tokens = 4096;  ///< source tokens per decoding batch
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
  /// Every key with its current value, as a TOML document with sections.
  std::string to_toml() const;
};

/// One configurable key.
struct ConfigField {
  std::string key;  ///< "section.name" (or "name" at the top level)
  std::string help;
  std::string type;                             ///< string | int | float | bool
  std::function<void(const std::string&)> set;  ///< parses a value; throws moe::Error naming the key
  std::function<std::string()> get;             ///< the value as a TOML literal
};

/// The fields of `config` (the functions refer to it; keep it alive).
std::vector<ConfigField> config_fields(RunConfig& config);

/// Applies a TOML document (`origin` names it in errors). Unknown keys are errors.
void apply_toml(RunConfig& config, const std::string& toml, const std::string& origin);
/// apply_toml on a file's content.
void apply_toml_file(RunConfig& config, const std::string& path);
/// Sets one key from its textual value (a command-line override).
void set_config_value(RunConfig& config, const std::string& key, const std::string& value);

/// The directions of a run: {"en-de", "de-en", ...} from data.directions/languages/pivot.
std::vector<std::pair<std::string, std::string>> run_directions(const DataConfig& data);

}  // namespace moe
