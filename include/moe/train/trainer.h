// The translation trainer: the update loop over a run's data (moe/data/translation_data.h) and model
// (the variant table decides its FFN slots): label-smoothed cross-entropy plus the MoE aux losses,
// or THOR's two-pass consistency step; gradient accumulation, sums over the processes of the run
// (one process is a world of one), clipping, AdamW under the inverse-sqrt schedule; reports,
// validation, checkpoints that resume exactly (moe/train/run_checkpoint.h), and the final evaluation
// (moe/eval/evaluate.h).
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

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "moe/data/translation_data.h"
#include "moe/eval/evaluate.h"
#include "moe/models/transformer.h"
#include "moe/train/config.h"
#include "moe/train/report.h"
#include "moe/train/run_checkpoint.h"
#include "moe/train/validation.h"

namespace moe {

class Trainer {
 public:
  /// resume_from: "" = a fresh run (the run folder must not hold checkpoints), "latest" = the newest
  /// step checkpoint in run_dir, or a checkpoint path. Step checkpoints after the resumed one move
  /// to run_dir/set-aside-<time>/ (deleted instead with discard_later_checkpoints), and best.moeckpt
  /// is repaired if it does not hold the best model the checkpoint records. Under moe-launch, Slurm
  /// or mpirun (the environment names the ranks) every process constructs its Trainer with the same
  /// configuration.
  explicit Trainer(RunConfig config, const std::string& resume_from = "", bool discard_later_checkpoints = false);
  ~Trainer();

  /// Trains until train.max_steps updates or train.max_minutes, validating and checkpointing on
  /// schedule; writes a final checkpoint.
  void train();
  ValidationResult validate();
  /// Decodes the eval split of every direction, scores it, writes hypotheses and results.json.
  EvaluationResult evaluate();
  /// Writes checkpoint-<step>.moeckpt and prunes old ones; `best` also writes best.moeckpt.
  void save_checkpoint(bool best = false);

  /// Test hook: when it returns true for an update number (1-based), that update's loss is made NaN
  /// before backward (fault injection).
  static std::function<bool(int64_t update)>& update_fault_hook();

  int64_t step() const { return step_; }
  const std::vector<StepRecord>& history() const { return history_; }
  TransformerModel& model() { return model_; }
  const RunConfig& config() const { return config_; }
  const TranslationData& data() const { return data_; }

 private:
  StepRecord train_step();
  /// Counts an update skipped for a non-finite loss or gradient; throws after too many in a row.
  void count_skipped_update(const StepRecord& record);
  /// Writes a checkpoint (when the step has none yet) and throws Interrupted.
  [[noreturn]] void stop_on_request(int signal);
  /// validate(), and whether its loss is the best so far (then recorded as such).
  bool validate_and_track_best();
  /// True (logged, and a metrics record) when train.patience validations in a row did not improve.
  bool patience_exhausted();
  /// The checkpoint to resume from (null for a fresh run, whose folder must hold no step checkpoints;
  /// `resume_path` gets its path), after removing the temporaries of interrupted checkpoint writes.
  std::unique_ptr<OpenedCheckpoint> open_run_folder(const std::string& resume_from, std::string& resume_path);
  void resume(const OpenedCheckpoint& checkpoint, const std::string& path);

  RunConfig config_;
  TranslationData data_;
  TransformerModel model_{nullptr};
  struct State;
  std::unique_ptr<State> state_;
  int64_t step_ = 0;
  std::vector<StepRecord> history_;
  bool discard_later_ = false;
  std::string set_aside_;  ///< where a resume moved the abandoned continuation's checkpoints
};

}  // namespace moe
