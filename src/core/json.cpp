// JSON builder and writer (see moe/core/json.h).
#include "moe/core/json.h"

#include <cmath>
#include <cstdio>

#include "moe/core/error.h"

namespace moe {

Json::Json(bool value) : kind_(Kind::kBool), bool_(value) {}
Json::Json(int64_t value) : kind_(Kind::kInt), int_(value) {}
Json::Json(double value) : kind_(Kind::kDouble), double_(value) {}
Json::Json(std::string value) : kind_(Kind::kString), string_(std::move(value)) {}

Json Json::object() {
  Json j;
  j.kind_ = Kind::kObject;
  return j;
}

Json Json::array() {
  Json j;
  j.kind_ = Kind::kArray;
  return j;
}

Json& Json::set(const std::string& key, Json value) {
  MOE_CHECK(kind_ == Kind::kObject, "Json::set('", key, "'): not an object");
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) {
      items_[i] = std::move(value);
      return *this;
    }
  }
  keys_.push_back(key);
  items_.push_back(std::move(value));
  return *this;
}

Json& Json::push(Json value) {
  MOE_CHECK(kind_ == Kind::kArray, "Json::push: not an array");
  items_.push_back(std::move(value));
  return *this;
}

std::string json_quote(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

void Json::write(std::string& out, int indent, int depth) const {
  auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent * d), ' ');
  };
  switch (kind_) {
    case Kind::kNull: out += "null"; break;
    case Kind::kBool: out += bool_ ? "true" : "false"; break;
    case Kind::kInt: out += std::to_string(int_); break;
    case Kind::kDouble: {
      if (!std::isfinite(double_)) {
        out += "null";
        break;
      }
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.17g", double_);
      // Shortest representation that round-trips.
      for (int p = 6; p <= 17; ++p) {
        char shorter[32];
        std::snprintf(shorter, sizeof(shorter), "%.*g", p, double_);
        if (std::strtod(shorter, nullptr) == double_) {
          std::snprintf(buf, sizeof(buf), "%s", shorter);
          break;
        }
      }
      out += buf;
      break;
    }
    case Kind::kString: out += json_quote(string_); break;
    case Kind::kArray:
    case Kind::kObject: {
      const bool obj = kind_ == Kind::kObject;
      out += obj ? '{' : '[';
      for (size_t i = 0; i < items_.size(); ++i) {
        if (i > 0) out += indent < 0 ? ", " : ",";
        newline(depth + 1);
        if (obj) out += json_quote(keys_[i]) + ": ";
        items_[i].write(out, indent, depth + 1);
      }
      if (!items_.empty()) newline(depth);
      out += obj ? '}' : ']';
      break;
    }
  }
}

std::string Json::dump(int indent) const {
  std::string out;
  write(out, indent, 0);
  return out;
}

}  // namespace moe
