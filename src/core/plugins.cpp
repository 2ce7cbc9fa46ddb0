// Plug-in shared libraries (see moe/core/plugins.h).
#include "moe/core/plugins.h"

#include <dlfcn.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <sstream>

#include "moe/core/error.h"
#include "moe/core/option_fields.h"

namespace moe {
namespace {

std::mutex g_mutex;
std::vector<std::string>& loaded() {
  static std::vector<std::string> paths;
  return paths;
}

}  // namespace

void load_plugin(const std::string& path) {
  std::error_code ec;
  MOE_CHECK(!path.empty(), "plugin: the path is empty");
  MOE_CHECK(std::filesystem::is_regular_file(path, ec), "plugin '", printable(path),
            "' cannot be loaded: no such file (build it, or give its path with --plugin)");
  const auto canonical = std::filesystem::canonical(path, ec).string();
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& paths = loaded();
  if (std::find(paths.begin(), paths.end(), canonical) != paths.end()) return;
  void* handle = ::dlopen(canonical.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    MOE_THROW("plugin '", printable(path), "' cannot be loaded: ", why != nullptr ? why : "unknown error");
  }
  paths.push_back(canonical);  // never unloaded: its routers stay registered
}

std::vector<std::string> loaded_plugins() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return loaded();
}

std::vector<std::string> split_plugin_list(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    const auto first = item.find_first_not_of(" \t"), last = item.find_last_not_of(" \t");
    if (first != std::string::npos) out.push_back(item.substr(first, last - first + 1));
  }
  return out;
}

}  // namespace moe
