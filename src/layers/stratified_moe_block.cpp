// SMoE stratified block (see moe/layers/stratified_moe_block.h).
#include "moe/layers/stratified_moe_block.h"

#include <ATen/ATen.h>

#include <sstream>

#include "moe/core/error.h"
#include "moe/layers/expert_parallel.h"
#include "moe/layers/routing_pass.h"

namespace moe {

std::vector<int64_t> parse_strata(const std::string& spec) {
  std::vector<int64_t> out;
  std::stringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MOE_CHECK(used > 0 && item.find_first_not_of(" \t", used) == std::string::npos && value >= 1,
              "strata must be a comma-separated list of positive expert counts such as \"4,12\", got \"", spec, "\"");
    out.push_back(value);
  }
  MOE_CHECK(!out.empty(), "strata must name at least one stratum such as \"4,12\", got \"", spec, "\"");
  return out;
}

StratifiedMoEBlockOptions::StratifiedMoEBlockOptions(int64_t d_model_, std::vector<int64_t> strata_, int64_t hidden)
    : d_model(d_model_), strata(std::move(strata_)) {
  router_options.top_k = 2;
  router_options.second_expert_policy = SecondExpertPolicy::kSampling;
  router_options.sample_in_eval = true;               // fairseq samples the 2nd expert at inference too
  router_options.capacity.eval_token_fraction = 1.0;  // generation: nothing dropped
  experts.ffn.d_model = d_model_;
  experts.ffn.hidden = hidden;
  experts.num_experts = num_experts();
}

int64_t StratifiedMoEBlockOptions::num_experts() const {
  int64_t total = 0;
  for (int64_t s : strata) total += s;
  return total;
}

void StratifiedMoEBlockOptions::validate() const {
  MOE_CHECK(d_model >= 1, "StratifiedMoEBlockOptions.d_model must be >= 1, got ", d_model);
  MOE_CHECK(!strata.empty(), "StratifiedMoEBlockOptions.strata must not be empty (e.g. {4, 12})");
  for (size_t i = 0; i < strata.size(); ++i) {
    MOE_CHECK(strata[i] >= 1, "StratifiedMoEBlockOptions.strata[", i, "] must be >= 1, got ", strata[i]);
  }
  MOE_CHECK(experts.num_experts == num_experts(), "StratifiedMoEBlockOptions.strata sum to ", num_experts(),
            " but experts.num_experts is ", experts.num_experts);
  MOE_CHECK(experts.ffn.d_model == d_model,
            "StratifiedMoEBlockOptions.experts.ffn.d_model must equal d_model=", d_model, ", got ",
            experts.ffn.d_model);
  MOE_CHECK(experts.first_expert == 0 && experts.local_count() == experts.num_experts,
            "StratifiedMoEBlockOptions.experts must hold every expert on one process");
  experts.validate("StratifiedMoEBlockOptions.experts");
  expert_shard(num_experts(), expert_group.get(), "StratifiedMoEBlockOptions");
  MOE_CHECK(layernorm_eps > 0, "StratifiedMoEBlockOptions.layernorm_eps must be > 0, got ", layernorm_eps);
}

StratifiedMoEBlockImpl::StratifiedMoEBlockImpl(const StratifiedMoEBlockOptions& options_) : options(options_) {
  options.validate();
  const int64_t L = static_cast<int64_t>(options.strata.size()), E = options.num_experts();
  int64_t first = 0;
  for (int64_t s = 0; s < L; ++s) {
    first_expert_.push_back(first);
    for (int64_t j = 0; j < options.strata[s]; ++j) stratum_of_.push_back(s);
    first += options.strata[s];
  }
  for (int64_t s = 0; s < L; ++s) {
    RouterOptions gate = options.router_options;
    gate.d_model = options.d_model;
    gate.num_experts = E - first_expert_[s];  // this stratum and every later one
    gate.top_k = std::min(gate.top_k, gate.num_experts);
    gate.validate("StratifiedMoEBlockOptions.router_options (stratum " + std::to_string(s) + ")");
    gates.push_back(register_module("gate" + std::to_string(s), make_router(options.router, gate)));
  }
  auto norm_options = torch::nn::LayerNormOptions({options.d_model}).eps(options.layernorm_eps);
  if (options.input_layernorm) input_norm = register_module("input_norm", torch::nn::LayerNorm(norm_options));
  if (options.stratum_layernorm) {
    stratum_norms = torch::nn::ModuleList();
    for (int64_t s = 0; s < L; ++s) stratum_norms->push_back(torch::nn::LayerNorm(norm_options));
    register_module("stratum_norms", stratum_norms);
  }
  auto bank = options.experts;
  const auto shard = expert_shard(E, options.expert_group.get(), "StratifiedMoEBlockOptions");
  bank.first_expert = shard.first;
  bank.num_local_experts = shard.count;
  experts = register_module("experts", ExpertBank(bank));
  grad_anchor_ = at::zeros({}).set_requires_grad(true);
}

int64_t StratifiedMoEBlockImpl::agree_on_stratum(int64_t local) const {
  if (!options.expert_group || options.expert_group->size() == 1) return local;
  auto t = at::full({1}, local, at::kLong);
  options.expert_group->all_reduce(t, ReduceOp::kMin);
  return t.item<int64_t>();
}

MoEOutput StratifiedMoEBlockImpl::forward_impl(const at::Tensor& x, const at::Tensor& token_ids,
                                               const at::Tensor& padding) {
  const int64_t d = options.d_model, E = options.num_experts();
  const int64_t L = static_cast<int64_t>(options.strata.size());
  auto h = flatten_slot_input(x, d, experts->expert(experts->options.first_expert)->w1, options.check_finite,
                              "StratifiedMoEBlock");
  const int64_t T = h.size(0);
  auto ids = token_ids.defined() ? token_ids.reshape({-1}) : at::Tensor();
  // The state machine lives on the input's device. Per pass it reads two values back to the host:
  // the number of tokens at the current stratum (nonzero: the pass's shape) and the next stratum
  // (min over the tokens' states: whether to run another pass). docs/gpu-training.md lists them.
  const auto device = h.device();
  auto pad = padding.defined() ? padding.reshape({-1}).to(device) : at::Tensor();
  auto long_cpu = at::TensorOptions().dtype(at::kLong);
  auto long_dev = long_cpu.device(device);
  if (!stratum_table_.defined() || stratum_table_.device() != device)
    stratum_table_ = at::tensor(stratum_of_, at::kLong).to(device);

  auto state = at::zeros({T}, long_dev);         // stratum each token waits for; L = done
  auto experts_used = at::zeros({T}, long_dev);  // experts that processed each token, over all passes
  std::vector<MoEStats> passes;

  int64_t s = agree_on_stratum(T == 0 ? L : 0);
  while (s < L) {
    auto active = state.eq(s).nonzero().squeeze(1);  // token indices, in order
    if (active.size(0) == 0) {
      // Expert parallelism only: other ranks still have tokens at stratum s; take part in the
      // exchange with no rows (no routing, no random draws, no aux-loss term for this rank).
      auto none =
          run_experts(*experts, h.new_empty({0, d}), at::zeros({E}, long_cpu), options.expert_group, grad_anchor_);
      // Tie the empty exchange into the graph so that its backward (a collective) runs here too.
      if (at::GradMode::is_enabled()) h = h + none.sum() * 0;
      s = agree_on_stratum(T == 0 ? L : state.min().item<int64_t>());
      continue;
    }
    auto h_active = h.index_select(0, active);
    at::Tensor input = h_active;
    if (s == 0 && options.input_layernorm) input = input_norm->forward(h_active);
    if (s > 0 && options.stratum_layernorm) input = stratum_norms[s - 1]->as<torch::nn::LayerNorm>()->forward(h_active);

    RoutingContext context;
    context.leading_shape = {active.size(0)};
    if (ids.defined()) context.token_ids = ids.index_select(0, active);
    if (pad.defined()) context.padding = pad.index_select(0, active);
    auto pass =
        run_routing_pass(*gates[s], *experts, input, context, first_expert_[s], E, options.expert_group, grad_anchor_);
    h = h.index_copy(0, active, h_active + pass.output);

    // Next stratum: that of the pre-capacity top-1 expert, plus one (an empty slot 0 moves on by one).
    auto top1 = pass.expert_index.select(1, 0).to(at::kLong);
    auto next = at::where(top1.ge(0), stratum_table_.index_select(0, top1.clamp_min(0)), s) + 1;
    state.index_copy_(0, active, next);
    experts_used.index_add_(0, active, pass.kept_per_token.to(at::kLong));
    passes.push_back(std::move(pass.stats));
    s = agree_on_stratum(state.min().item<int64_t>());
  }
  auto out = options.stratum_layernorm ? stratum_norms[L - 1]->as<torch::nn::LayerNorm>()->forward(h) : h;

  MoEOutput result;
  result.output = out.view(x.sizes());
  // The passes' statistics summed (aux losses averaged over the executed passes), over the block's T
  // tokens: passes_per_token = Σ pass sizes / T; the histogram counts experts over all passes.
  result.stats = merge_stats(passes);
  result.stats.num_tokens = T;
  // Each padding row counted once (the passes counted it in every pass it sat in).
  result.stats.padding =
      pad.defined() && options.router_options.mask_padding ? pad.sum().to(at::kLong) : at::zeros({}, at::kLong);
  result.stats.experts_per_token_histogram = at::bincount(experts_used, {}, 1);
  if (passes.empty()) {  // merge_stats' empty statistics are on the host; so is this block's then
    result.stats.experts_per_token_histogram = result.stats.experts_per_token_histogram.cpu();
    result.stats.tokens_per_expert = at::zeros({E}, long_cpu);
    result.stats.requested_per_expert = at::zeros({E}, long_cpu);
  }
  result.stats.finalize();
  return result;
}

}  // namespace moe
