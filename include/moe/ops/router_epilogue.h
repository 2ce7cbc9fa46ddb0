// The router epilogue: softmax over the experts fused with the expert selection. On CUDA (CUDA tier,
// fp32 logits, E <= 256) one kernel does both (kernels/router_epilogue.cuh); elsewhere the same
// function is computed with ATen ops. Either way probs carries the softmax gradient to the logits;
// the selection is not differentiable.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace moe {

struct RouterSelection {
  at::Tensor probs;  ///< [T, E], softmax(logits) in the logits' dtype (differentiable)
  at::Tensor index;  ///< [T, K] int64, selected experts, best first; -1 pads variable-k rows
};

/// Softmax + top-k (Switch, GShard, Mixtral): the k largest logits in descending order, ties to the
/// lower expert id (the greedy argmax of moe::TopKRouter). logits: [T, E] fp32 or fp64; 1 <= k <= E.
RouterSelection softmax_topk(const at::Tensor& logits, int64_t k);

/// Softmax + threshold (XMoE): per token, experts in descending probability while the probability
/// mass before them is below `threshold` (the first always). index is [T, K] with K the largest
/// count in the batch (one device-to-host read of that count on CUDA), -1 padded.
/// logits: [T, E] fp32 or fp64; threshold in (0, 1].
RouterSelection softmax_threshold(const at::Tensor& logits, double threshold);

/// The ATen formulation of the threshold selection on given probabilities: (index [T, K] int64 -1
/// padded, weight [T, K] = probs at index, 0 where padded). probs: [T, E] floating.
std::pair<at::Tensor, at::Tensor> threshold_select(const at::Tensor& probs, double threshold);

/// True when softmax_topk / softmax_threshold would run the fused kernel for these logits.
bool router_epilogue_fused(const at::Tensor& logits, int64_t k = 1);

}  // namespace moe
