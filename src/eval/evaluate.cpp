// Decode-and-score of a translation run (see moe/eval/evaluate.h).
#include "moe/eval/evaluate.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "moe/core/error.h"
#include "moe/core/logging.h"
#include "moe/eval/sacrebleu.h"
#include "moe/eval/translate.h"

namespace moe {
namespace fs = std::filesystem;

namespace {

void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path);
  for (const auto& line : lines) out << line << '\n';
  out.flush();
  MOE_CHECK(out.good(), "evaluate: cannot write ", path);
}

std::string results_table(const EvaluationResult& result) {
  std::ostringstream table;
  table << "\n| direction | sentences | BLEU | chrF2 | chrF2++ |\n|---|---:|---:|---:|---:|\n"
        << std::fixed << std::setprecision(2);
  double bleu_sum = 0, chrf_sum = 0;
  for (const auto& r : result.directions) {
    table << "| " << r.source << "-" << r.target << " | " << r.sentences << " | " << r.bleu << " | " << r.chrf2 << " | "
          << r.chrf2pp << " |\n";
    bleu_sum += r.bleu;
    chrf_sum += r.chrf2;
  }
  const double nd = static_cast<double>(std::max<size_t>(1, result.directions.size()));
  table << "| mean | | " << bleu_sum / nd << " | " << chrf_sum / nd << " | |\n";
  if (!result.directions.empty())
    table << "BLEU: " << result.directions.front().bleu_signature
          << "\nchrF2: " << result.directions.front().chrf_signature
          << "\nchrF2++: " << result.directions.front().chrfpp_signature << "\n";
  const auto& p = result.parameters;
  table << std::setprecision(1) << "parameters: " << p.total / 1e6 << "M total, " << p.active / 1e6
        << "M active per token, " << p.forward_flops_per_token / 1e6 << " MFLOPs per token (forward)\n";
  return table.str();
}

}  // namespace

EvaluationResult evaluate_translation(TransformerModel& model, const TranslationData& data, const EvalConfig& eval,
                                      int64_t max_length, const EvaluationContext& context) {
  EvaluationResult result;
  result.parameters = context.parameters;
  result.experts_per_token = context.experts_per_token;
  TranslateOptions to;
  to.search.beam = eval.beam;
  to.search.lenpen = eval.lenpen;
  to.search.max_len_a = eval.max_len_a;
  to.search.max_len_b = eval.max_len_b;
  to.max_tokens = eval.max_tokens;
  to.max_length = max_length;
  const bool write = !context.out_dir.empty();
  auto directions = Json::object();
  for (size_t d = 0; d < data.directions.size(); ++d) {
    const auto& text = data.eval_text[d];
    DirectionResult r;
    r.source = data.directions[d].first;
    r.target = data.directions[d].second;
    r.sentences = static_cast<int64_t>(text.source.size());
    const auto start = std::chrono::steady_clock::now();
    auto hyps = translate(model, data.tokenizer, language_tag(r.target), text.source, to);
    r.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto name = direction_name(data.directions[d]);
    r.hypothesis_file = (fs::path(context.out_dir) / ("hyp." + name + ".txt")).string();
    if (write) {
      write_lines(r.hypothesis_file, hyps);
      write_lines((fs::path(context.out_dir) / ("ref." + name + ".txt")).string(), text.target);
      write_lines((fs::path(context.out_dir) / ("src." + name + ".txt")).string(), text.source);
    }
    const RefStreams refs{text.target};
    BleuOptions bo;
    ChrFOptions co, cpp;
    cpp.word_order = 2;
    r.bleu = corpus_bleu(hyps, refs, bo).score;
    r.chrf2 = corpus_chrf(hyps, refs, co).score;
    r.chrf2pp = corpus_chrf(hyps, refs, cpp).score;
    r.bleu_signature = bo.signature(1);
    r.chrf_signature = co.signature(1);
    r.chrfpp_signature = cpp.signature(1);
    log_info(detail::concat("[eval] ", name, ": BLEU ", std::round(r.bleu * 100) / 100, " chrF2 ",
                            std::round(r.chrf2 * 100) / 100, " chrF2++ ", std::round(r.chrf2pp * 100) / 100, " (",
                            r.sentences, " sentences, ", std::round(r.decode_seconds * 10) / 10, " s)"));
    directions[name] = {{"bleu", r.bleu},
                        {"chrf2", r.chrf2},
                        {"chrf2pp", r.chrf2pp},
                        {"sentences", r.sentences},
                        {"hypothesis_file", r.hypothesis_file},
                        {"bleu_signature", r.bleu_signature},
                        {"chrf2_signature", r.chrf_signature},
                        {"chrf2pp_signature", r.chrfpp_signature},
                        {"decode_seconds", r.decode_seconds}};
    result.directions.push_back(r);
  }
  const auto& p = result.parameters;
  Json ept = Json::object();
  for (const auto& [k, v] : result.experts_per_token) ept[k] = v;
  result.document = {{"variant", context.variant},
                     {"step", context.step},
                     {"train_minutes", context.train_minutes},
                     {"stop_reason", context.stop_reason},
                     {"eval_split", eval.split},
                     {"beam", eval.beam},
                     {"directions", directions},
                     {"model",
                      {{"total_parameters", p.total},
                       {"expert_parameters", p.expert},
                       {"active_parameters", p.active},
                       {"forward_flops_per_token", p.forward_flops_per_token},
                       {"expert_flops_per_token", p.expert_flops_per_token},
                       {"experts_per_token", ept}}}};
  if (write) {
    const auto path = (fs::path(context.out_dir) / "results.json").string();
    std::ofstream(path) << result.document.dump(2) << "\n";
    log_info(results_table(result));
    log_info("[eval] results: " + path);
  }
  return result;
}

}  // namespace moe
