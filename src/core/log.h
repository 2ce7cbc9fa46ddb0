// Internal logging macros over spdlog (never included from public headers).
// Message convention: "[component] what happened", e.g. MOE_LOG_INFO("[router] dropped {} tokens", n).
#pragma once

#include <spdlog/spdlog.h>

namespace moe::detail {
/// The process-wide logger configured by moe::init_logging (created on first use).
spdlog::logger& logger();
}  // namespace moe::detail

#define MOE_LOG_TRACE(...) ::moe::detail::logger().trace(__VA_ARGS__)
#define MOE_LOG_DEBUG(...) ::moe::detail::logger().debug(__VA_ARGS__)
#define MOE_LOG_INFO(...) ::moe::detail::logger().info(__VA_ARGS__)
#define MOE_LOG_WARN(...) ::moe::detail::logger().warn(__VA_ARGS__)
#define MOE_LOG_ERROR(...) ::moe::detail::logger().error(__VA_ARGS__)
