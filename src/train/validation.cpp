// Validation of a translation run (see moe/train/validation.h).
#include "moe/train/validation.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include "moe/train/label_smoothing.h"
#include "moe/train/random_state.h"
#include "moe/train/report.h"

namespace moe {

ValidationResult validate_translation(TransformerModel& model, const TranslationData& data,
                                      const ValidationOptions& options, const at::Device& device, Communicator& world) {
  model->eval();
  torch::NoGradGuard no_grad;
  ScopedSeed draws(options.seed * 1000003ULL + static_cast<uint64_t>(options.step), device);
  ValidationResult r;
  double loss = 0, tokens = 0;
  MoEStatsWindow window;
  // Sums in float64 on the device, in the order the host sums used to run: one read per direction.
  const auto sum_options = at::TensorOptions().dtype(at::kDouble).device(device);
  auto nll_sum = at::zeros({}, sum_options);
  for (size_t d = 0; d < data.directions.size(); ++d) {
    const auto name = direction_name(data.directions[d]);
    auto dl_sum = at::zeros({}, sum_options), dt_sum = at::zeros({}, sum_options);
    for (const auto& b : make_eval_batches(data.valid[d], options.max_tokens)) {
      auto out = model->forward(b.source.to(device), b.target_input.to(device));
      auto ls = label_smoothed_cross_entropy(out.logits, b.target_output.to(device), options.label_smoothing,
                                             SentencePieceTokenizer::kPad);
      dl_sum += ls.loss.to(at::kDouble);
      nll_sum += ls.nll.to(at::kDouble);
      dt_sum += ls.num_tokens.to(at::kDouble);
      window.add(out.moe, name);
    }
    const auto read = at::stack({dl_sum, dt_sum}).cpu();
    const double dl = read[0].item<double>(), dt = read[1].item<double>();
    loss += dl;
    tokens += dt;
    r.loss_per_direction[name] = dt > 0 ? dl / dt : 0.0;
  }
  const double nll = nll_sum.item<double>();
  r.loss = tokens > 0 ? loss / tokens : 0.0;
  r.nll = tokens > 0 ? nll / tokens : 0.0;
  // Every rank computed the same batches; rank 0's numbers decide (the best checkpoint) everywhere,
  // so that a last-bit difference cannot send the ranks down different paths.
  auto v = at::tensor({r.loss, r.nll}, at::kDouble);
  world.broadcast(v, 0);
  r.loss = v[0].item<double>();
  r.nll = v[1].item<double>();
  for (const auto& [layer, stats] : window.layers())
    r.experts_per_token[layer] = stats.experts_per_token.item<double>();
  r.usage = window.usage_by_layer();
  return r;
}

}  // namespace moe
