// Errors thrown by moe. Library code throws moe::Error with a message that names the field, the
// value and what was expected ("MoELayerOptions.num_experts must be >= 1, got 0"); only a program's
// main() turns errors into exit codes.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace moe {

/// The exception type of every caller error detected by moe.
class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

}  // namespace moe

/// Throws moe::Error with the streamed arguments as message when `cond` is false.
/// Example: MOE_CHECK(k >= 1, "RouterOptions.top_k must be >= 1, got ", k);
#define MOE_CHECK(cond, ...)                                  \
  do {                                                        \
    if (!(cond)) {                                            \
      throw ::moe::Error(::moe::detail::concat(__VA_ARGS__)); \
    }                                                         \
  } while (0)

/// Throws moe::Error with the streamed arguments as message.
#define MOE_THROW(...) throw ::moe::Error(::moe::detail::concat(__VA_ARGS__))
