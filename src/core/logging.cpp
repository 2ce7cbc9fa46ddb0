// Logging facade implementation over spdlog (see moe/core/logging.h).
#include "moe/core/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <memory>
#include <mutex>

#include "moe/core/error.h"

namespace moe {
namespace {

std::mutex g_mutex;
std::shared_ptr<spdlog::logger> g_logger;

spdlog::level::level_enum to_spdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return spdlog::level::trace;
    case LogLevel::kDebug: return spdlog::level::debug;
    case LogLevel::kInfo: return spdlog::level::info;
    case LogLevel::kWarn: return spdlog::level::warn;
    case LogLevel::kError: return spdlog::level::err;
    case LogLevel::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

int64_t rank_from_env() {
  const char* value = std::getenv("RANK");
  return value != nullptr ? std::atoll(value) : 0;
}

std::shared_ptr<spdlog::logger> make_logger(LogLevel level, const std::string& file, int64_t rank, bool all_ranks) {
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  if (!file.empty()) sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(file));
  auto logger = std::make_shared<spdlog::logger>("moe", sinks.begin(), sinks.end());
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [rank " + std::to_string(rank) + "] [%^%l%$] %v");
  LogLevel effective = level;
  if (rank != 0 && !all_ranks && level < LogLevel::kWarn) effective = LogLevel::kWarn;
  logger->set_level(to_spdlog(effective));
  logger->flush_on(spdlog::level::trace);  // every line reaches the file at once: a crash loses none
  return logger;
}

}  // namespace

namespace {
// The process-wide logger configured by init_logging (created on first use).
spdlog::logger& logger() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_logger) g_logger = make_logger(LogLevel::kInfo, "", rank_from_env(), false);
  return *g_logger;
}
}  // namespace

LogLevel parse_log_level(const std::string& name) {
  if (name == "trace") return LogLevel::kTrace;
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  if (name == "off") return LogLevel::kOff;
  throw Error("log level must be one of trace, debug, info, warn, error, off; got '" + name + "'");
}

void init_logging(LogLevel level, const std::string& file, int64_t rank, bool all_ranks) {
  auto logger = make_logger(level, file, rank < 0 ? rank_from_env() : rank, all_ranks);
  std::lock_guard<std::mutex> lock(g_mutex);
  g_logger = std::move(logger);
}

void set_log_level(LogLevel level) { logger().set_level(to_spdlog(level)); }

void log_info(const std::string& message) { logger().info("{}", message); }
void log_warn(const std::string& message) { logger().warn("{}", message); }
void log_error(const std::string& message) { logger().error("{}", message); }

}  // namespace moe
