// Hash router (see moe/routing/hash_router.h).
#include "moe/routing/hash_router.h"

#include <ATen/ATen.h>

#include "moe/core/error.h"

namespace moe {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

at::Tensor hash_to_expert(const at::Tensor& values, int64_t num_experts, uint64_t seed) {
  MOE_CHECK(num_experts >= 1, "hash_to_expert: num_experts must be >= 1, got ", num_experts);
  auto in = values.to(at::kCPU, at::kLong).contiguous();
  auto out = at::empty_like(in);
  const int64_t* v = in.data_ptr<int64_t>();
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < in.numel(); ++i) {
    o[i] = static_cast<int64_t>(splitmix64(static_cast<uint64_t>(v[i]) ^ seed) % static_cast<uint64_t>(num_experts));
  }
  return out.to(values.device());
}

HashRouterImpl::HashRouterImpl(const RouterOptions& options) : RouterImpl(options) {
  options_.top_k = 1;
  options_.validate();
  by_token_ = options_.hash_by == "token";
  options_.normalization = WeightNormalization::kNone;
}

RoutingPlan HashRouterImpl::route_impl(const at::Tensor& hidden, const RoutingContext& context) {
  const int64_t T = hidden.size(0);
  at::Tensor values;
  if (by_token_) {
    MOE_CHECK(context.token_ids.defined(),
              "HashRouter: hash_by='token' needs token ids (MoELayer::forward(x, token_ids)); none were given");
    values = context.token_ids;
  } else {
    const int64_t S = context.leading_shape.back();
    values = at::arange(T, at::kLong).remainder(S);  // position within the sequence (batch-major)
  }
  RoutingPlan plan;
  plan.expert_index = hash_to_expert(values, options_.num_experts, static_cast<uint64_t>(options_.hash_seed))
                          .reshape({T, 1})
                          .to(hidden.device());
  plan.weight =
      at::ones({T, 1}, hidden.options().dtype(hidden.scalar_type() == at::kDouble ? at::kDouble : at::kFloat));
  plan.normalization = WeightNormalization::kNone;
  plan.capacity = -1;
  return plan;
}

}  // namespace moe
