// The router registry (a core/registry.h Registry of router factories): built-in routers are
// registered here, once, under std::call_once; routers of your own through register_router.
// To add a router to the library: write its header/source pair and add one line to
// register_builtin_routers().
#include <mutex>

#include "moe/core/registry.h"
#include "moe/routing/expert_choice_router.h"
#include "moe/routing/hash_router.h"
#include "moe/routing/router.h"
#include "moe/routing/stochastic_router.h"
#include "moe/routing/threshold_router.h"
#include "moe/routing/topk_router.h"

namespace moe {
namespace {

Registry<RouterFactory>& router_registry() {
  static Registry<RouterFactory> registry("router");
  return registry;
}

template <typename Impl>
RouterFactory factory_of() {
  return [](const RouterOptions& options) { return std::make_shared<Impl>(options); };
}

void register_builtin_routers() {
  auto& registry = router_registry();
  registry.add("topk", factory_of<TopKRouterImpl>());
  registry.add("threshold", factory_of<ThresholdRouterImpl>());
  registry.add("stochastic", factory_of<StochasticRouterImpl>());
  registry.add("expert_choice", factory_of<ExpertChoiceRouterImpl>());
  registry.add("hash", factory_of<HashRouterImpl>());
}

Registry<RouterFactory>& routers() {
  static std::once_flag once;
  std::call_once(once, register_builtin_routers);
  return router_registry();
}

}  // namespace

void register_router(const std::string& name, RouterFactory factory) { routers().add(name, std::move(factory)); }

std::shared_ptr<RouterImpl> make_router(const std::string& name, const RouterOptions& options) {
  auto router = routers().get(name)(options);
  MOE_CHECK(router != nullptr, "the factory of router '", name, "' returned no router");
  router->name_ = name;
  return router;
}

std::vector<std::string> known_routers() { return routers().names(); }

}  // namespace moe
