// toml++ behind a flat entry list (see src/core/toml_document.h).
#include "core/toml_document.h"

#include <toml++/toml.h>

#include <cmath>
#include <sstream>

#include "moe/core/error.h"
#include "moe/core/option_fields.h"

namespace moe::detail {
namespace {

std::string kind_of(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::array: return node.as_array()->is_array_of_tables() ? "table-array" : "array";
    case toml::node_type::table: return "table";
    default: return "date-time";
  }
}

std::string scalar_text(const toml::node& node) {
  if (auto s = node.value<std::string>(); node.is_string() && s) return *s;
  if (node.is_integer()) return std::to_string(*node.value<int64_t>());
  if (node.is_floating_point()) {
    const double v = *node.value<double>();
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    return format_float(v);
  }
  if (node.is_boolean()) return *node.value<bool>() ? "true" : "false";
  // Dates and times: their TOML text.
  std::ostringstream out;
  node.visit([&out](const auto& value) { out << value; });
  return out.str();
}

void flatten(const toml::table& table, const std::string& prefix, std::vector<TomlEntry>& out) {
  for (const auto& [key, node] : table) {
    const std::string path = prefix.empty() ? std::string(key.str()) : prefix + "." + std::string(key.str());
    if (node.is_table()) {
      flatten(*node.as_table(), path, out);
      continue;
    }
    TomlEntry e;
    e.key = path;
    e.kind = kind_of(node);
    e.line = static_cast<int>(node.source().begin.line);
    if (const auto* array = node.as_array(); array != nullptr && !array->is_array_of_tables()) {
      for (size_t i = 0; i < array->size(); ++i) {
        const auto& item = *array->get(i);
        const auto kind = kind_of(item);
        e.item_kind = i == 0 ? kind : (e.item_kind == kind ? kind : "");
        e.text += (i == 0 ? "" : ",") + scalar_text(item);
      }
    } else if (e.kind != "table-array") {
      e.text = scalar_text(node);
    }
    out.push_back(std::move(e));
  }
}

}  // namespace

std::vector<TomlEntry> parse_toml_entries(const std::string& text, const std::string& origin) {
  toml::table table;
  try {
    table = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    MOE_THROW(origin, ":", where.line, ":", where.column, ": ", e.description());
  }
  std::vector<TomlEntry> out;
  flatten(table, "", out);
  return out;
}

}  // namespace moe::detail
