// Internal: a TOML document parsed by toml++ and flattened into (dotted key, kind, text, line)
// entries, so that code built with LibTorch's headers never includes toml++ (it is compiled in its
// own translation unit, like the logging facade). Used by the run configuration (train/config.cpp).
#pragma once

#include <string>
#include <vector>

namespace moe::detail {

struct TomlEntry {
  std::string key;   ///< dotted path of a value: "model.d_model", "moe.router.cosine_dim"
  std::string kind;  ///< string | integer | float | boolean | array | date-time | table-array
  /// The value as text: a string as is; integers in decimal; floats in their shortest round-trip
  /// form (nan and inf kept as such); booleans true/false; an array of scalars its items joined
  /// with ','.
  std::string text;
  std::string item_kind;  ///< arrays: the kind of their items ("" when empty or mixed)
  int line = 0;           ///< 1-based line of the value
};

/// Parses `text` as TOML 1.0 (duplicate keys and tables, malformed values: errors). Throws
/// moe::Error "<origin>:<line>:<column>: <what toml++ says>".
std::vector<TomlEntry> parse_toml_entries(const std::string& text, const std::string& origin);

}  // namespace moe::detail
