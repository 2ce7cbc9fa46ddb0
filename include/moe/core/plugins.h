// Plug-in shared libraries: code outside the library (a router of your own, say) that registers
// itself when loaded, so that the stock programs can use it (moe-train --plugin libmy_router.so, or
// moe.plugins in a config file). A plugin links against libmoe and registers in a static initialiser,
// e.g. MOE_REGISTER_ROUTER("cosine", CosineRouterImpl) (moe/routing/router.h). A library is loaded
// once per process, whatever path names it.
#pragma once

#include <string>
#include <vector>

namespace moe {

/// Loads the shared library at `path` (dlopen, symbols resolved now); a library already loaded
/// (same file) is not loaded again. Throws moe::Error with the loader's reason.
void load_plugin(const std::string& path);
/// The plugins loaded so far (canonical paths), in load order.
std::vector<std::string> loaded_plugins();
/// Splits a comma-separated list of paths ("a.so,b.so"), trimming blanks.
std::vector<std::string> split_plugin_list(const std::string& list);

}  // namespace moe
