// Hash router (Roller et al. 2021, "Hash Layers For Large Sparse Models"): each token goes to the
// expert given by a fixed hash of its token id (RouterOptions::hash_by = "token"; the ids come in
// RoutingContext::token_ids) or of its position in the sequence ("position"), with weight 1. No
// parameters, no auxiliary loss, no capacity limit. The hash is splitmix64(value ^ hash_seed) mod E.
#pragma once

#include <torch/nn/pimpl.h>

#include "moe/routing/router.h"

namespace moe {

class HashRouterImpl : public RouterImpl {
 public:
  explicit HashRouterImpl(const RouterOptions& options);

 protected:
  RoutingPlan route_impl(const at::Tensor& hidden, const RoutingContext& context) override;

 private:
  bool by_token_ = true;
};
TORCH_MODULE(HashRouter);

/// The fixed hash: splitmix64(value ^ seed) mod num_experts. values: int64 tensor on the CPU.
at::Tensor hash_to_expert(const at::Tensor& values, int64_t num_experts, uint64_t seed);

}  // namespace moe
