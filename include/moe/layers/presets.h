// The three papers' layers with their official code's settings, as starting points. Every field
// stays an ordinary option; where the official behaviour and a cleaner choice differ, the preset
// takes the official one and the README's "Variants" section lists the alternatives.
#pragma once

#include "moe/layers/moe_layer.h"
#include "moe/layers/stratified_moe_block.h"

namespace moe {

/// XMoE (ysngki/XMoE): threshold router (t = 0.9, fp32, no noise, raw probabilities), capacity
/// max(ceil((T/E)·γ), 4) with γ = 8 (LM script) or 2 (MT) in training and evaluation, balance loss
/// 0.01 from the top-1,
/// every expert a copy of the first (replicated init). Small experts: pass hidden = d_ff / 8 etc.
/// lm_code: the Megatron LM code's quirks (GELU, no fc2 bias); false = the fairseq MT code (ReLU,
/// both biases).
MoELayerOptions xmoe_layer_options(int64_t d_model, int64_t num_experts, int64_t hidden, bool lm_code = false);

/// XMoE's top-k baseline, as the same code implements it (papers.md 2.4, main_topkGating): first
/// expert argmax p, the other k-1 the best of logits + Gumbel noise (noise in training and in
/// evaluation), raw softmax weights (not renormalised), capacity max(ceil(T/E·γ), 4) with no factor k
/// (CapacityFormula::kTokenShare), rank-major first-come-first-served priority, balance loss 0.01, and
/// XMoE's experts (replicated init; lm_code as above).
MoELayerOptions xmoe_topk_layer_options(int64_t d_model, int64_t num_experts, int64_t hidden, int64_t top_k,
                                        bool lm_code = false);

/// THOR (microsoft/Stochastic-Mixture-of-Experts): stochastic router, one draw per forward pass in
/// training, per position shared across the batch in evaluation (the released script's
/// inference_level 1); ReLU experts with independent init; no capacity, no aux loss. Train with
/// consistency_training_step (alpha 1.0 default, 5.0 in the IWSLT script).
MoELayerOptions thor_layer_options(int64_t d_model, int64_t num_experts, int64_t hidden);

/// SMoE (fe1ixxu/Stratified_Mixture_of_Experts): top-2 gates per stratum with a Gumbel-sampled second
/// expert in training and inference, capacity 2·ceil(T_i/E_visible), evaluation token fraction 1.0
/// (generation; the official validation loss uses 0.25), per-stratum and exit LayerNorms, ReLU experts
/// with independent init, balance 0.01, and the layer's dropout inside each expert (0.3 in the paper
/// runs): the block's output is final, so no dropout can follow it.
StratifiedMoEBlockOptions smoe_block_options(int64_t d_model, const std::vector<int64_t>& strata, int64_t hidden,
                                             double dropout = 0.3);

}  // namespace moe
