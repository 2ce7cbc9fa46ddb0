// Logging facade. spdlog stays inside src/; public code only sets the level, the optional file and
// the process rank that appears in every line ("[rank 0]"). Rank 0 logs at the chosen level; other
// ranks log warnings and above unless all_ranks is set.
#pragma once

#include <cstdint>
#include <string>

namespace moe {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };

/// Parses "trace", "debug", "info", "warn", "error", "off"; throws moe::Error otherwise.
LogLevel parse_log_level(const std::string& name);

/// (Re)configures the process-wide logger. rank < 0 reads RANK from the environment (0 if unset).
/// file: when non-empty, lines are also appended to this file.
void init_logging(LogLevel level = LogLevel::kInfo, const std::string& file = "", int64_t rank = -1,
                  bool all_ranks = false);
void set_log_level(LogLevel level);

/// Plain-string logging for code outside the library (examples, user programs).
void log_info(const std::string& message);
void log_warn(const std::string& message);
void log_error(const std::string& message);

}  // namespace moe
