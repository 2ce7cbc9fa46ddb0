// Decode-and-score of a translation run: every direction's evaluation text translated with beam
// search (moe/eval/translate.h), scored with sacreBLEU-exact BLEU, chrF2 and chrF2++, the hypothesis
// and reference files written beside results.json, and the results table logged.
//
// Files in out_dir: hyp.<src>-<tgt>.txt, ref.<src>-<tgt>.txt (rescore with moe-score),
// src.<src>-<tgt>.txt (the sources, to translate again with moe-translate), results.json.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "moe/core/json.h"
#include "moe/data/translation_data.h"
#include "moe/models/transformer.h"

namespace moe {

/// [eval] of a run.
struct EvalConfig {
  bool enabled = true;         ///< evaluate the test split after training
  std::string split = "test";  ///< test | valid
  int64_t beam = 5;            ///< 1 = greedy
  double lenpen = 1.0;
  double max_len_a = 1.2;  ///< hypotheses at most a·source_length + b tokens
  int64_t max_len_b = 10;
  int64_t max_tokens = 4096;  ///< source tokens per decoding batch
};

struct DirectionResult {
  std::string source, target;
  int64_t sentences = 0;
  double bleu = 0, chrf2 = 0, chrf2pp = 0;
  std::string bleu_signature, chrf_signature, chrfpp_signature;
  std::string hypothesis_file;
  double decode_seconds = 0;
};

struct EvaluationResult {
  std::vector<DirectionResult> directions;
  ParameterCount parameters;
  std::map<std::string, double> experts_per_token;  ///< per MoE layer, measured on the validation split
  Json document;                                    ///< results.json's content
};

/// What results.json records about the run besides the scores.
struct EvaluationContext {
  std::string out_dir;  ///< where the files go; "" = write none
  std::string variant;
  int64_t step = 0;
  double train_minutes = 0;
  std::string stop_reason;  ///< why training ended ("train.max_steps reached", "early stop: ...")
  ParameterCount parameters;
  std::map<std::string, double> experts_per_token;
};

/// Translates data.eval_text of every direction with `model` (put in evaluation mode) and scores it.
/// max_length: source tokens per sentence (the run's data.max_length).
EvaluationResult evaluate_translation(TransformerModel& model, const TranslationData& data, const EvalConfig& eval,
                                      int64_t max_length, const EvaluationContext& context);

}  // namespace moe
