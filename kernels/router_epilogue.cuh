// The router epilogue fused into one kernel per decision: softmax over the experts, then the
// selection, one warp per token with the token's logits in registers (E <= 256: 8 per lane).
//
//   softmax + top-k (Switch, GShard, Mixtral; k <= 8): the k largest logits in descending order,
//     ties to the lower expert id (the greedy argmax loop of moe::TopKRouter).
//   softmax + threshold (XMoE, Yang et al. 2024, "XMoE: Sparse Models with Fine-grained and Adaptive
//     Expert Selection"): experts in descending probability while the probability mass before them
//     is below the threshold (the first always), as moe::threshold_select computes it: the running
//     sum is accumulated in fp64 and rounded to fp32 like ATen's CPU cumsum.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace moe::kernels {

constexpr int64_t kEpilogueMaxExperts = 256;
constexpr int64_t kEpilogueMaxTopK = 8;

/// logits: [T, E] fp32 device. probs: [T, E] fp32 device, softmax(logits). index: [T, k] int64
/// device. 1 <= E <= 256, 1 <= k <= min(8, E).
cudaError_t launch_softmax_topk(const float* logits, int64_t num_tokens, int64_t num_experts, int64_t top_k,
                                float* probs, int64_t* index, cudaStream_t stream);

/// logits: [T, E] fp32 device. probs: [T, E] fp32. index: [T, E] int64, the selected experts in
/// descending probability then -1. count: [T] int64, experts selected per token (>= 1).
/// threshold in (0, 1]; 1 <= E <= 256.
cudaError_t launch_softmax_threshold(const float* logits, int64_t num_tokens, int64_t num_experts,
                                     double threshold, float* probs, int64_t* index, int64_t* count,
                                     cudaStream_t stream);

}  // namespace moe::kernels
