// Named, typed option fields (see moe/core/option_fields.h).
#include "moe/core/option_fields.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "moe/core/error.h"

namespace moe {
namespace {

std::string number_text(double v) {
  std::ostringstream out;
  out.precision(15);
  out << v;
  return out.str();
}

}  // namespace

const char* to_string(FieldType type) {
  switch (type) {
    case FieldType::kString: return "string";
    case FieldType::kInt: return "int";
    case FieldType::kFloat: return "float";
    case FieldType::kBool: return "bool";
  }
  return "?";
}

int64_t parse_int_text(const std::string& text, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(text.c_str(), &end, 10);
  MOE_CHECK(!text.empty() && end != nullptr && *end == '\0' && errno == 0, what, ": expected an integer, got '",
            printable(text), "'");
  return parsed;
}

double parse_float_text(const std::string& text, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  const double parsed = std::strtod(text.c_str(), &end);
  MOE_CHECK(!text.empty() && end != nullptr && *end == '\0' && std::isfinite(parsed), what,
            ": expected a finite number, got '", printable(text), "'");
  return parsed;
}

bool parse_bool_text(const std::string& text, const std::string& what) {
  if (text == "true" || text == "1" || text == "on" || text == "yes") return true;
  if (text == "false" || text == "0" || text == "off" || text == "no") return false;
  MOE_THROW(what, ": expected true or false, got '", printable(text), "'");
}

std::string format_float(double v) {
  std::string s;
  for (int p = 1; p <= 17; ++p) {  // the shortest form that reads back identically
    std::ostringstream o;
    o.precision(p);
    o << v;
    s = o.str();
    if (std::strtod(s.c_str(), nullptr) == v) break;
  }
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // a TOML float literal
  return s;
}

std::string toml_string(const std::string& text) {
  bool literal_ok = text.find('\'') == std::string::npos;
  for (unsigned char c : text) literal_ok = literal_ok && (c >= 0x20 || c == '\t') && c != 0x7f;
  if (literal_ok) return "'" + text + "'";
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
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

std::string printable(const std::string& text, size_t max_chars) {
  std::string out;
  size_t i = 0;
  for (; i < text.size() && out.size() < max_chars;) {
    const auto c = static_cast<unsigned char>(text[i]);
    // Length of a valid UTF-8 sequence starting here (0 = invalid).
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    for (size_t k = 1; n > 1 && k < n; ++k)
      if (i + k >= text.size() || (static_cast<unsigned char>(text[i + k]) >> 6) != 0x2) n = 0;
    if (n == 1 && (c < 0x20 || c == 0x7f)) n = 0;
    if (i == 0 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) {  // a UTF-8 byte-order mark, named
      out += "<BOM>";
      i += 3;
      continue;
    }
    if (n == 0) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
      ++i;
    } else {
      out.append(text, i, n);
      i += n;
    }
  }
  if (i < text.size()) out += "… (" + std::to_string(text.size() - i) + " more bytes)";
  return out;
}

// The checks capture copies of the accessors, never `this`: a field is moved when its list grows.
OptionField& OptionField::at_least(double lo) {
  allowed = [numeric = numeric, lo] { return numeric() >= lo ? std::string() : ">= " + number_text(lo); };
  return *this;
}

OptionField& OptionField::above(double lo) {
  allowed = [numeric = numeric, lo] { return numeric() > lo ? std::string() : "> " + number_text(lo); };
  return *this;
}

OptionField& OptionField::in(double lo, double hi, bool hi_open, bool lo_open) {
  allowed = [numeric = numeric, lo, hi, hi_open, lo_open] {
    const double v = numeric();
    const bool ok = (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    return ok ? std::string()
              : std::string(lo_open ? "in (" : "in [") + number_text(lo) + ", " + number_text(hi) +
                    (hi_open ? ")" : "]");
  };
  return *this;
}

OptionField& OptionField::one_of(std::vector<std::string> names) {
  allowed = [get = get, names] {
    const auto v = get();
    std::string list;
    for (size_t i = 0; i < names.size(); ++i) {
      if (toml_string(names[i]) == v) return std::string();
      list += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
    }
    return "one of " + list;
  };
  return *this;
}

OptionField& OptionField::rule(std::function<std::string()> allowed_text) {
  allowed = std::move(allowed_text);
  return *this;
}

void OptionField::check(const std::string& owner, bool by_member) const {
  if (!allowed) return;
  const auto why = allowed();
  if (why.empty()) return;
  const auto& name = by_member && !member.empty() ? member : key;
  MOE_THROW(owner.empty() ? name : owner + "." + name, " must be ", why, ", got ",
            numeric && std::isfinite(numeric()) ? number_text(numeric()) : printable(get()));
}

OptionField& FieldList::add(const std::string& key, std::string& ref, const std::string& help) {
  OptionField f;
  f.key = key;
  f.help = help;
  f.type = FieldType::kString;
  f.set = [&ref](const std::string& v) { ref = v; };
  f.get = [&ref] { return toml_string(ref); };
  fields_.push_back(std::move(f));
  return fields_.back();
}

OptionField& FieldList::add(const std::string& key, int64_t& ref, const std::string& help) {
  OptionField f;
  f.key = key;
  f.help = help;
  f.type = FieldType::kInt;
  f.set = [&ref, key](const std::string& v) { ref = parse_int_text(v, key); };
  f.get = [&ref] { return std::to_string(ref); };
  f.numeric = [&ref] { return static_cast<double>(ref); };
  fields_.push_back(std::move(f));
  return fields_.back();
}

OptionField& FieldList::add(const std::string& key, double& ref, const std::string& help) {
  OptionField f;
  f.key = key;
  f.help = help;
  f.type = FieldType::kFloat;
  f.set = [&ref, key](const std::string& v) { ref = parse_float_text(v, key); };
  f.get = [&ref] { return format_float(ref); };
  f.numeric = [&ref] { return ref; };
  f.allowed = [&ref] { return std::isfinite(ref) ? std::string() : std::string("finite"); };
  fields_.push_back(std::move(f));
  return fields_.back();
}

OptionField& FieldList::add(const std::string& key, bool& ref, const std::string& help) {
  OptionField f;
  f.key = key;
  f.help = help;
  f.type = FieldType::kBool;
  f.set = [&ref, key](const std::string& v) { ref = parse_bool_text(v, key); };
  f.get = [&ref] { return std::string(ref ? "true" : "false"); };
  fields_.push_back(std::move(f));
  return fields_.back();
}

OptionField& FieldList::add_custom(const std::string& key, FieldType type, const std::string& help,
                                   std::function<void(const std::string&)> parse, std::function<std::string()> format) {
  OptionField f;
  f.key = key;
  f.help = help;
  f.type = type;
  f.set = std::move(parse);
  f.get = std::move(format);
  fields_.push_back(std::move(f));
  return fields_.back();
}

void FieldList::check_all(const std::string& owner, bool by_member) const {
  for (const auto& f : fields_) f.check(owner, by_member);
}

}  // namespace moe
