// Router auxiliary losses. Each returns the unweighted value; routers attach it to the RoutingPlan
// as an AuxLoss with its coefficient.
#pragma once

#include <ATen/core/Tensor.h>

namespace moe {

/// Switch/GShard load-balancing loss E · Σ_e f_e · P_e (Fedus et al. 2021, eq. 4; Lepikhin et al. 2020),
/// with f_e the fraction of tokens whose pre-capacity top-1 expert is e and P_e the mean router
/// probability of e. fairseq computes it as mean(me · ce) · E², which is the same.
/// probs: [T, E] floating (softmax output); top1: [T] int64 in [0, E); padding: optional [T] bool,
/// rows left out of the top-1 counts f_e (both means still divide by T, as fairseq's input mask
/// does). Returns a 0-dim tensor in probs' dtype (0 when T = 0), differentiable with respect to probs.
at::Tensor load_balancing_loss(const at::Tensor& probs, const at::Tensor& top1, const at::Tensor& padding = {});

/// Router z-loss mean_t (logsumexp_e logits[t, e])² (Zoph et al. 2022, ST-MoE, eq. 5).
/// logits: [T, E] floating. Returns a 0-dim tensor in logits' dtype (0 when T = 0).
at::Tensor router_z_loss(const at::Tensor& logits);

}  // namespace moe
