// The message of the moe::Error a callable throws ("no error" when it throws none), for tests that
// assert error messages.
#pragma once

#include <functional>
#include <string>

#include "moe/core/error.h"

namespace moe::testing {

inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace moe::testing
