// A name -> factory registry, the mechanism behind make_router(name, ...). Explicit registration
// (built-ins are registered once under std::call_once by their owner), never static
// self-registering objects, which a linker may drop from a static library.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/error.h"

namespace moe {

template <typename Factory>
class Registry {
 public:
  /// what: the kind of thing registered, used in messages ("router").
  explicit Registry(std::string what) : what_(std::move(what)) {}

  /// Registers `factory` under `name`; registering a name twice is an error.
  void add(const std::string& name, Factory factory) {
    std::lock_guard<std::mutex> lock(mutex_);
    MOE_CHECK(!name.empty(), "a ", what_, " name must not be empty");
    MOE_CHECK(entries_.count(name) == 0, what_, " '", name, "' is already registered");
    entries_.emplace(name, std::move(factory));
  }

  /// The factory for `name`; throws moe::Error listing the known names when there is none.
  Factory get(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      std::string known;
      for (const auto& entry : entries_) known += (known.empty() ? "" : ", ") + entry.first;
      throw Error(detail::concat("unknown ", what_, " '", name, "'; known ", what_, "s: ", known));
    }
    return it->second;
  }

  bool contains(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.count(name) != 0;
  }

  /// Registered names in sorted order.
  std::vector<std::string> names() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    for (const auto& entry : entries_) out.push_back(entry.first);
    return out;
  }

 private:
  std::string what_;
  mutable std::mutex mutex_;
  std::map<std::string, Factory> entries_;
};

}  // namespace moe
