// JSON lines in Python's json.dumps style (see moe/core/json.h).
#include "moe/core/json.h"

namespace moe {

std::string json_line(const Json& value) {
  // Scalars (strings with their escapes, shortest round-trip numbers, null for NaN/Inf) are written
  // by nlohmann; only the separators between an object's or array's items are ours.
  if (value.is_object()) {
    std::string out = "{";
    bool first = true;
    for (const auto& [key, item] : value.items()) {
      out += (first ? "" : ", ") + Json(key).dump() + ": " + json_line(item);
      first = false;
    }
    return out + "}";
  }
  if (value.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < value.size(); ++i) out += (i ? ", " : "") + json_line(value[i]);
    return out + "]";
  }
  return value.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

}  // namespace moe
