// Shared by the command-line programs: every RunConfig key as a --<section>.<name> option, applied
// after the --config file so that the command line overrides it, and --moe.router.<name> VALUE for
// the settings of a router of your own (any name; the [moe.router] table of a config file).
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/error.h"
#include "moe/train/config.h"

namespace moe::cli {

struct ConfigOptions {
  std::string file;
  bool file_given = false;           ///< --config appeared (set after parsing: app.count("--config") > 0)
  std::vector<std::string> plugins;  ///< --plugin (repeatable): added to moe.plugins
  std::vector<std::pair<std::string, std::string>> overrides;  ///< in command-line order
};

/// Adds --config and one --<key> option per config field.
inline void add_config_options(CLI::App& app, ConfigOptions& options) {
  app.add_option("--config", options.file, "TOML run configuration (configs/*.toml); other options override it");
  app.add_option("--plugin", options.plugins,
                 "a shared library of routers of your own to load (repeatable; recorded as moe.plugins)");
  RunConfig defaults;
  for (const auto& field : config_fields(defaults)) {
    const std::string key = field.key;
    const bool optional = static_cast<bool>(field.is_set);
    app.add_option_function<std::string>(
           "--" + key, [&options, key](const std::string& value) { options.overrides.emplace_back(key, value); },
           field.help + " [" + to_string(field.type) + ", default " +
               (optional ? std::string("the variant's") : field.get()) + "]")
        ->group("Config keys");
  }
}

/// Takes --moe.router.<name> VALUE and --moe.router.<name>=VALUE out of argv (CLI11 knows only fixed
/// names) into `options`; returns the remaining arguments for CLI11.
inline std::vector<std::string> take_router_settings(int argc, char** argv, ConfigOptions& options) {
  const std::string prefix = "--moe.router.";
  std::vector<std::string> rest;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind(prefix, 0) != 0 || arg.size() == prefix.size()) {
      rest.push_back(arg);
      continue;
    }
    const auto eq = arg.find('=');
    if (eq != std::string::npos) {
      options.overrides.emplace_back(arg.substr(2, eq - 2), arg.substr(eq + 1));
    } else if (i + 1 < argc) {
      options.overrides.emplace_back(arg.substr(2), argv[++i]);
    } else {
      throw Error(arg + " needs a value");
    }
  }
  std::reverse(rest.begin(), rest.end());  // CLI11::App::parse(std::vector) takes arguments in reverse order
  return rest;
}

/// Defaults, then the file, then the command-line overrides; validated.
inline RunConfig resolve_config(const ConfigOptions& options) {
  RunConfig config;
  if (options.file_given) apply_toml_file(config, options.file);  // "" or a folder: an error, not the defaults
  for (const auto& [key, value] : options.overrides) set_config_value(config, key, value);
  for (const auto& path : options.plugins) {
    const auto absolute = std::filesystem::absolute(path).string();  // the checkpoint records where it was
    auto& list = config.model.moe.plugins;
    if (list.find(absolute) == std::string::npos) list += (list.empty() ? "" : ",") + absolute;
  }
  load_run_plugins(config, "the configuration");
  config.validate();
  return config;
}

/// Parses the command line into `app` and `options` (router settings first) and resolves the run
/// configuration. Returns false with `exit_code` set when the program should end here (--help, or a
/// parse error CLI11 has printed).
inline bool parse_run_config(CLI::App& app, int argc, char** argv, ConfigOptions& options, RunConfig& config,
                             int& exit_code) {
  auto args = take_router_settings(argc, argv, options);
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    exit_code = app.exit(e);
    return false;
  }
  options.file_given = app.count("--config") > 0;
  config = resolve_config(options);
  return true;
}

}  // namespace moe::cli
