// The translation trainer: data (default gettext corpus or a folder corpus), SentencePiece, the
// Transformer with MoE slots, label-smoothed cross-entropy plus MoE aux losses (or THOR's two-pass
// consistency step), Adam with inverse-sqrt warmup, clipping, accumulation, checkpoints that resume
// exactly, console and metrics.jsonl reports, expert-usage heatmaps, and the final evaluation
// (beam search, sacreBLEU-exact BLEU and chrF, results.json).
//
// Run folder (config.run_dir):
//   config.toml                 the resolved configuration
//   train.log                   the console log
//   metrics.jsonl               one JSON record per report (train, moe, valid, eval)
//   checkpoint-<step>.moeckpt   the last train.keep_last step checkpoints; best.moeckpt
//   heatmaps/step<N>-<layer>.svg  expert usage per direction at each validation
//   hyp.<src>-<tgt>.txt, ref.<src>-<tgt>.txt (rescore with moe-score), results.json
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "moe/data/batching.h"
#include "moe/data/corpus.h"
#include "moe/data/tokenizer.h"
#include "moe/models/transformer.h"
#include "moe/train/config.h"

namespace torch::serialize {
class InputArchive;
}

namespace moe {

/// The corpus of a run, tokenised.
struct TranslationData {
  std::vector<std::pair<std::string, std::string>> directions;  ///< (source, target) languages
  std::string corpus_root;
  SentencePieceTokenizer tokenizer;
  std::vector<std::vector<Example>> train, valid;  ///< per direction
  std::vector<ParallelText> eval_text;             ///< per direction: the eval split (raw text)
};

/// Builds (or reuses from data.cache_dir) the corpus and tokenizer. `tokenizer`, when given (a
/// resumed run), is used instead of training or loading one.
TranslationData load_translation_data(const RunConfig& config, const SentencePieceTokenizer* tokenizer = nullptr);

/// One update's record.
struct StepRecord {
  int64_t step = 0;
  double loss = 0;         ///< label-smoothed CE per target token (nats; THOR: mean of the two passes)
  double nll = 0;          ///< NLL per target token (nats)
  double aux = 0;          ///< combined MoE aux loss (token-weighted mean over micro-batches)
  double consistency = 0;  ///< THOR: consistency term per token (unweighted)
  double lr = 0;
  double grad_norm = 0;
  int64_t tokens = 0;  ///< target tokens in the update
};

struct DirectionResult {
  std::string source, target;
  int64_t sentences = 0;
  double bleu = 0, chrf2 = 0, chrf2pp = 0;
  std::string bleu_signature, chrf_signature, chrfpp_signature;
  std::string hypothesis_file;
};

struct EvaluationResult {
  std::vector<DirectionResult> directions;
  ParameterCount parameters;
  std::map<std::string, double> experts_per_token;  ///< per MoE layer, measured on the validation split
};

struct ValidationResult {
  double loss = 0, nll = 0;  ///< per target token over all directions
  std::map<std::string, double> loss_per_direction;
  std::map<std::string, double> experts_per_token;  ///< per MoE layer
};

class Trainer {
 public:
  /// resume_from: "" = a fresh run (the run folder must not hold checkpoints), "latest" = the newest
  /// step checkpoint in run_dir, or a checkpoint path.
  explicit Trainer(RunConfig config, const std::string& resume_from = "");
  ~Trainer();

  /// Trains until train.max_steps updates or train.max_minutes, validating and checkpointing on
  /// schedule; writes a final checkpoint.
  void train();
  ValidationResult validate();
  /// Decodes the eval split of every direction, scores it, writes hypotheses and results.json.
  EvaluationResult evaluate();
  /// Writes checkpoint-<step>.moeckpt and prunes old ones; `best` also writes best.moeckpt.
  void save_checkpoint(bool best = false);

  int64_t step() const { return step_; }
  const std::vector<StepRecord>& history() const { return history_; }
  TransformerModel& model() { return model_; }
  const RunConfig& config() const { return config_; }
  const TranslationData& data() const { return data_; }

 private:
  StepRecord train_step();
  /// Restores model, optimizer, RNG, batcher and counters from an opened checkpoint archive.
  void load_checkpoint(torch::serialize::InputArchive& archive, const std::string& path);
  void report_moe_stats();
  void save_sharded_checkpoint(bool best);
  /// Multi-process runs: every expert gathered into one model on rank 0 (collective over the expert
  /// groups); model_ itself when it already holds every expert or on the other ranks.
  TransformerModel gathered_model();
  /// Restores a multi-process run's checkpoint (this process's shard of it) into any world size.
  void load_sharded_checkpoint(const std::map<std::string, at::Tensor>& state, const std::string& path);
  std::string checkpoint_payload();

  RunConfig config_;
  TranslationData data_;
  TransformerModel model_{nullptr};
  struct State;
  std::unique_ptr<State> state_;
  int64_t step_ = 0;
  std::vector<StepRecord> history_;
};

/// A model restored from a checkpoint for translation (moe-translate).
struct LoadedModel {
  RunConfig config;
  SentencePieceTokenizer tokenizer;
  TransformerModel model{nullptr};
  int64_t step = 0;
};
LoadedModel load_model_checkpoint(const std::string& path, const std::string& device = "cpu");

}  // namespace moe
