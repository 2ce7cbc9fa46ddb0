// MoE statistics: rates from counts, merging, printing (see moe/layers/moe_stats.h).
#include "moe/layers/moe_stats.h"

#include <ATen/ATen.h>

#include <iomanip>
#include <sstream>

#include "moe/core/error.h"

namespace moe {
namespace {

at::Tensor sum_defined(const at::Tensor& a, const at::Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return a + b.to(a.device());
}

at::Tensor add_histograms(const at::Tensor& a, const at::Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  const int64_t n = std::max(a.numel(), b.numel());
  auto out = at::zeros({n}, a.options());
  out.narrow(0, 0, a.numel()).add_(a);
  out.narrow(0, 0, b.numel()).add_(b.to(a.device()));
  return out;
}

}  // namespace

void MoEStats::finalize() {
  if (!padding.defined()) padding = at::zeros({}, at::kLong);
  // Rates per real token, on the routing's device (selected's). Counts the CUDA layout already read
  // to the host come over as scalars: moving a device count to the host instead would read device
  // memory (a synchronisation per call).
  const auto device = selected.defined() ? selected.device() : tokens_per_expert.device();
  auto count = [&](const at::Tensor& t) {  // a 0-dim count as fp32 on `device`
    auto v = t.to(at::kFloat);
    if (v.device() == device) return v;
    if (v.is_cpu()) return at::scalar_tensor(v.item<float>(), at::TensorOptions().dtype(at::kFloat).device(device));
    return v.to(device);
  };
  auto tokens = (static_cast<double>(num_tokens) - count(padding)).clamp_min(1);
  auto kept = count(tokens_per_expert.sum());
  auto sel = count(selected);
  dropped_fraction = count(dropped) / sel.clamp_min(1);
  experts_per_token = kept / tokens;
  selected_per_token = sel / tokens;
  passes_per_token = num_tokens > 0 ? count(token_passes) / tokens : at::zeros({}, sel.options());
}

MoEStats merge_stats(const std::vector<MoEStats>& parts) {
  MoEStats out;
  std::map<std::string, int64_t> terms;
  for (const auto& p : parts) {
    MOE_CHECK(!out.tokens_per_expert.defined() || p.tokens_per_expert.numel() == out.tokens_per_expert.numel(),
              "merge_stats: statistics of ", out.tokens_per_expert.numel(), " and ", p.tokens_per_expert.numel(),
              " experts cannot be merged");
    out.num_tokens += p.num_tokens;
    out.padding = sum_defined(out.padding, p.padding);
    out.tokens_per_expert = sum_defined(out.tokens_per_expert, p.tokens_per_expert);
    out.requested_per_expert = sum_defined(out.requested_per_expert, p.requested_per_expert);
    out.selected = sum_defined(out.selected, p.selected);
    out.dropped = sum_defined(out.dropped, p.dropped);
    out.token_passes = sum_defined(out.token_passes, p.token_passes);
    out.experts_per_token_histogram = add_histograms(out.experts_per_token_histogram, p.experts_per_token_histogram);
    for (const auto& [name, loss] : p.aux_losses) {
      auto it = out.aux_losses.find(name);
      if (it == out.aux_losses.end()) {
        out.aux_losses[name] = loss;
      } else {
        it->second.value = it->second.value + loss.value;
      }
      ++terms[name];
    }
  }
  for (auto& [name, loss] : out.aux_losses)
    if (terms[name] > 1) loss.value = loss.value / static_cast<double>(terms[name]);
  if (parts.empty()) {
    auto zero = at::zeros({}, at::kLong);
    out.tokens_per_expert = at::zeros({0}, at::kLong);
    out.requested_per_expert = out.tokens_per_expert;
    out.selected = out.dropped = out.token_passes = zero;
    out.experts_per_token_histogram = at::zeros({1}, at::kLong);
  }
  out.finalize();
  return out;
}

MoEStats dense_stats(int64_t num_tokens, const at::TensorOptions& counts_options) {
  auto o = counts_options.dtype(at::kLong);
  MoEStats s;
  s.num_tokens = num_tokens;
  s.tokens_per_expert = at::full({1}, num_tokens, o);
  s.requested_per_expert = s.tokens_per_expert;
  s.selected = at::full({}, num_tokens, o);
  s.dropped = at::zeros({}, o);
  s.token_passes = s.selected;
  s.experts_per_token_histogram = at::tensor({int64_t{0}, num_tokens}, o);
  s.finalize();
  return s;
}

at::Tensor MoEStats::total_aux_loss() const {
  at::Tensor total;
  for (const auto& [name, loss] : aux_losses) {
    if (loss.coefficient == 0) continue;  // 0 · inf would be NaN
    auto term = loss.weighted();
    total = total.defined() ? total + term : term;
  }
  return total.defined() ? total : at::zeros({});
}

double MoEStats::relative_expert_flops(int64_t k) const {
  MOE_CHECK(k >= 1, "MoEStats::relative_expert_flops: k must be >= 1, got ", k);
  return experts_per_token.item<double>() / static_cast<double>(k);
}

std::string MoEStats::to_string() const {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3) << "tokens=" << num_tokens;
  if (dropped_fraction.defined()) out << " dropped=" << 100.0 * dropped_fraction.item<double>() << "%";
  if (experts_per_token.defined()) out << " experts/token=" << experts_per_token.item<double>();
  if (passes_per_token.defined()) out << " passes/token=" << passes_per_token.item<double>();
  for (const auto& [name, loss] : aux_losses) out << " " << name << "=" << loss.value.item<double>();
  if (tokens_per_expert.defined()) {
    out << " load=[";
    auto counts = tokens_per_expert.to(at::kCPU).contiguous();
    for (int64_t e = 0; e < counts.numel(); ++e) out << (e ? "," : "") << counts.data_ptr<int64_t>()[e];
    out << "]";
  }
  return out.str();
}

}  // namespace moe
