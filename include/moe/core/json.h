// A small JSON value builder and writer for the library's outputs (metrics.jsonl, results.json,
// moe-score --json). Keys keep their insertion order; numbers are written with enough digits to
// round-trip; non-finite numbers become null (JSON has no NaN).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace moe {

class Json {
 public:
  Json() = default;  ///< null
  Json(bool value);
  Json(int value) : Json(static_cast<int64_t>(value)) {}
  Json(int64_t value);
  Json(double value);
  Json(const char* value) : Json(std::string(value)) {}
  Json(std::string value);
  template <typename T>
  Json(const std::vector<T>& values) : Json(array()) {
    for (const auto& v : values) push(Json(v));
  }

  static Json object();
  static Json array();
  /// Adds (or replaces) `key` of an object; returns *this for chaining.
  Json& set(const std::string& key, Json value);
  /// Appends to an array.
  Json& push(Json value);
  /// indent < 0: one line; otherwise pretty-printed with `indent` spaces.
  std::string dump(int indent = -1) const;

 private:
  enum class Kind { kNull, kBool, kInt, kDouble, kString, kArray, kObject };
  void write(std::string& out, int indent, int depth) const;
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0;
  std::string string_;
  std::vector<Json> items_;
  std::vector<std::string> keys_;  ///< object keys, parallel to items_
};

/// `text` as a JSON string literal (quotes included; control characters escaped).
std::string json_quote(const std::string& text);

}  // namespace moe
