// Shared by the command-line programs: every RunConfig key as a --<section>.<name> option, applied
// after the --config file so that the command line overrides it.
#pragma once

#include <CLI/CLI.hpp>
#include <map>
#include <string>
#include <vector>

#include "moe/train/config.h"

namespace moe::cli {

struct ConfigOptions {
  std::string file;
  std::vector<std::pair<std::string, std::string>> overrides;  ///< one per key given (a key may appear once)
  std::map<std::string, std::string> values;                   ///< filled by CLI11
};

/// Adds --config and one --<key> option per config field.
inline void add_config_options(CLI::App& app, ConfigOptions& options) {
  app.add_option("--config", options.file, "TOML run configuration (configs/*.toml); other options override it");
  RunConfig defaults;
  for (const auto& field : config_fields(defaults)) {
    const std::string key = field.key;
    app.add_option_function<std::string>(
           "--" + key, [&options, key](const std::string& value) { options.overrides.emplace_back(key, value); },
           field.help + " [" + field.type + ", default " + field.get() + "]")
        ->group("Config keys");
  }
}

/// Defaults, then the file, then the command-line overrides; validated.
inline RunConfig resolve_config(const ConfigOptions& options) {
  RunConfig config;
  if (!options.file.empty()) apply_toml_file(config, options.file);
  for (const auto& [key, value] : options.overrides) set_config_value(config, key, value);
  config.validate();
  return config;
}

}  // namespace moe::cli
