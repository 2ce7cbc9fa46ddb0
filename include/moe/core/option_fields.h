// Options as named, typed, text-settable fields: the mechanism behind every config key. An options
// struct lists its fields once (key, help, type, where the value lives, what is allowed); the list
// then sets values from text (a TOML file, a command line), prints them as TOML literals, and checks
// them with messages that name the key, the value and what is allowed.
//
//   FieldList f;
//   f.add("top_k", o.top_k, "experts per token").at_least(1);
//   f.add("jitter", o.jitter, "input jitter ε").in(0, 1, /*hi_open=*/true);
//   f.check_all("moe");   // throws "moe.jitter must be in [0, 1), got 2"
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace moe {

enum class FieldType { kString, kInt, kFloat, kBool };
/// "string", "int", "float", "bool".
const char* to_string(FieldType type);

struct OptionField {
  std::string key;   ///< e.g. "threshold"; a list may carry a prefix ("moe.threshold")
  std::string help;  ///< one line for --help and docs
  FieldType type = FieldType::kString;
  /// Parses `text` into the field. Throws moe::Error "<key>: expected <type>, got '<text>'"; numbers
  /// must be finite.
  std::function<void(const std::string& text)> set;
  /// The value as a TOML literal ('text', 3, 0.5, true).
  std::function<std::string()> get;
  /// "" when the value is allowed, else what is allowed ("in [0, 1)"); null = anything.
  std::function<std::string()> allowed;

  /// Range checks on a numeric field (int or float); each replaces the previous check.
  OptionField& at_least(double lo);
  OptionField& above(double lo);
  OptionField& in(double lo, double hi, bool hi_open = false, bool lo_open = false);
  /// A string field's allowed values.
  OptionField& one_of(std::vector<std::string> names);
  /// Any rule: returns "" when the value is allowed, else what is allowed.
  OptionField& rule(std::function<std::string()> allowed_text);

  /// Throws moe::Error "<owner>.<name> must be <allowed>, got <value>" unless allowed; the name is
  /// the key, or the C++ member path when `by_member` and the field has one.
  void check(const std::string& owner, bool by_member = false) const;
  /// The C++ member this key sets when its name differs ("capacity.capacity_factor"), for messages
  /// about options structs built in code.
  std::string member;

  std::function<double()> numeric;  ///< the value as a double (numeric fields), for range checks
};

/// Builds a list of fields that refer to an options struct (keep the struct alive while in use).
class FieldList {
 public:
  OptionField& add(const std::string& key, std::string& ref, const std::string& help);
  OptionField& add(const std::string& key, int64_t& ref, const std::string& help);
  OptionField& add(const std::string& key, double& ref, const std::string& help);
  OptionField& add(const std::string& key, bool& ref, const std::string& help);
  /// A field with its own text conversions (enums): parse throws moe::Error on a bad value.
  OptionField& add_custom(const std::string& key, FieldType type, const std::string& help,
                          std::function<void(const std::string&)> parse, std::function<std::string()> format);

  std::vector<OptionField>& fields() { return fields_; }
  /// check(owner, by_member) on every field, in order.
  void check_all(const std::string& owner, bool by_member = false) const;

 private:
  std::vector<OptionField> fields_;
};

/// Parsers shared by fields and command lines; each throws moe::Error "<what>: expected ..., got '<text>'".
int64_t parse_int_text(const std::string& text, const std::string& what);
double parse_float_text(const std::string& text, const std::string& what);  ///< finite only
bool parse_bool_text(const std::string& text, const std::string& what);
/// Shortest decimal text that reads back to `value`, always with a '.' or exponent (a TOML float).
std::string format_float(double value);
/// A TOML string literal: 'text' when possible (no escapes needed), else a basic "..." string.
std::string toml_string(const std::string& text);
/// `text` cut to `max_chars` bytes (at a UTF-8 boundary) with "… (N more bytes)" appended, and
/// control or invalid bytes shown as \xNN: safe to print in a one-line message.
std::string printable(const std::string& text, size_t max_chars = 80);

}  // namespace moe
