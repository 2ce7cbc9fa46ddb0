// Official-code presets of the XMoE, THOR and SMoE layers (see moe/layers/presets.h).
#include "moe/layers/presets.h"

namespace moe {

MoELayerOptions xmoe_layer_options(int64_t d_model, int64_t num_experts, int64_t hidden, bool lm_code) {
  MoELayerOptions o(d_model, num_experts, hidden, /*top_k=*/1);
  o.router = "threshold";
  o.router_options.threshold = 0.9;
  o.router_options.capacity.formula = CapacityFormula::kDeepSpeed;
  const double gamma = lm_code ? 8.0 : 2.0;  // LM script: 8 (train and eval); fairseq MT: 2
  o.router_options.capacity.capacity_factor = gamma;
  o.router_options.capacity.eval_capacity_factor = gamma;
  o.router_options.capacity.min_capacity = 4;
  o.router_options.balance_loss_coef = 0.01;
  o.experts.init = ExpertInit::kReplicated;
  o.experts.ffn.activation = lm_code ? Activation::kGelu : Activation::kRelu;
  o.experts.ffn.fc2_bias = !lm_code;
  return o;
}

MoELayerOptions xmoe_topk_layer_options(int64_t d_model, int64_t num_experts, int64_t hidden, int64_t top_k,
                                        bool lm_code) {
  auto o = xmoe_layer_options(d_model, num_experts, hidden, lm_code);  // capacity γ, min 4, experts, balance
  o.router = "topk";
  o.router_options.top_k = top_k;
  o.router_options.capacity.formula = CapacityFormula::kTokenShare;  // max(ceil(T/E·γ), 4): no factor k
  o.router_options.second_expert_policy = SecondExpertPolicy::kSampling;
  o.router_options.sample_in_eval = true;                       // its noise is added in evaluation too
  o.router_options.normalization = WeightNormalization::kNone;  // raw softmax probabilities
  return o;
}

MoELayerOptions thor_layer_options(int64_t d_model, int64_t num_experts, int64_t hidden) {
  MoELayerOptions o(d_model, num_experts, hidden, /*top_k=*/1);
  o.router = "stochastic";
  o.router_options.train_granularity = "batch";
  o.router_options.eval_granularity = "position";
  o.router_options.capacity.drop_tokens = false;
  o.router_options.balance_loss_coef = 0;
  return o;
}

StratifiedMoEBlockOptions smoe_block_options(int64_t d_model, const std::vector<int64_t>& strata, int64_t hidden,
                                             double dropout) {
  StratifiedMoEBlockOptions o(d_model, strata, hidden);
  o.router_options.balance_loss_coef = 0.01;
  o.experts.ffn.output_dropout = dropout;  // the layer's dropout, inside each expert (the block output is final)
  return o;
}

}  // namespace moe
