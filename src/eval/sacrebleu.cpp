// sacreBLEU-exact BLEU and chrF (see moe/eval/sacrebleu.h and shared/data/bleu.md).
#include "moe/eval/sacrebleu.h"

#include <locale.h>

#include <algorithm>
#include <clocale>
#include <cmath>
#include <cstdio>
#include <cwctype>
#include <map>
#include <string>
#include <unordered_map>

#include "moe/core/error.h"
#include "sacrebleu_formulas.h"

namespace moe {
namespace {

constexpr const char* kVersion = "2.6.0";

// ---- UTF-8 -----------------------------------------------------------------------------------------

// Decodes the code point at s[i]; sets len to its byte length (invalid bytes decode as themselves).
char32_t decode_at(const std::string& s, size_t i, size_t& len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  auto cont = [&](size_t k) { return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80; };
  if (b0 < 0x80) {
    len = 1;
    return b0;
  }
  if ((b0 & 0xE0) == 0xC0 && cont(1)) {
    len = 2;
    return ((b0 & 0x1F) << 6) | (s[i + 1] & 0x3F);
  }
  if ((b0 & 0xF0) == 0xE0 && cont(1) && cont(2)) {
    len = 3;
    return ((b0 & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
  }
  if ((b0 & 0xF8) == 0xF0 && cont(1) && cont(2) && cont(3)) {
    len = 4;
    return ((b0 & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
  }
  len = 1;
  return b0;
}

void encode(char32_t c, std::string& out) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// Python's str.isspace() set, as str.split() and rstrip() use it.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::u32string to_code_points(const std::string& s) {
  std::u32string out;
  for (size_t i = 0, len = 0; i < s.size(); i += len) out += decode_at(s, i, len);
  return out;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0, hit;
  while ((hit = s.find(from, pos)) != std::string::npos) {
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  s.swap(out);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Pass A's character class of tokenizer 13a: [{-~[-` -&(-+:-@/].
bool is_13a_symbol(unsigned char c) {
  return (c >= 0x20 && c <= 0x26) || (c >= 0x28 && c <= 0x2B) || c == 0x2F || (c >= 0x3A && c <= 0x40) ||
         (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}

// ---- n-gram counting ---------------------------------------------------------------------------------

using Counts = std::unordered_map<std::string, int64_t>;

// Word n-grams of order n as keys joined by '\x1f' (cannot occur inside a token).
Counts word_ngrams(const std::vector<std::string>& tokens, int n) {
  Counts counts;
  for (size_t i = 0; i + n <= tokens.size(); ++i) {
    std::string key = tokens[i];
    for (int k = 1; k < n; ++k) key += '\x1f' + tokens[i + k];
    ++counts[key];
  }
  return counts;
}

std::string format_fixed(double value, int width) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", width, value);
  return buffer;
}

}  // namespace

// ---- text ---------------------------------------------------------------------------------------------

std::vector<std::string> split_whitespace(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  for (size_t i = 0, len = 0; i < text.size(); i += len) {
    const char32_t c = decode_at(text, i, len);
    if (is_python_space(c)) {
      if (!current.empty()) out.push_back(std::move(current));
      current.clear();
    } else {
      current.append(text, i, len);
    }
  }
  if (!current.empty()) out.push_back(std::move(current));
  return out;
}

std::string rstrip_whitespace(const std::string& text) {
  size_t keep = 0;
  for (size_t i = 0, len = 0; i < text.size(); i += len) {
    if (!is_python_space(decode_at(text, i, len))) keep = i + len;
  }
  return text.substr(0, keep);
}

std::string lowercase_utf8(const std::string& text) {
  static locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0, len = 0; i < text.size(); i += len) {
    char32_t c = decode_at(text, i, len);
    if (c < 0x80) {
      c = (c >= 'A' && c <= 'Z') ? c + 32 : c;
    } else if (utf8 != nullptr) {
      c = static_cast<char32_t>(towlower_l(static_cast<wint_t>(c), utf8));
    }
    encode(c, out);
  }
  return out;
}

std::string tokenize_13a(const std::string& segment) {
  std::string s = segment;
  replace_all(s, "<skipped>", "");
  replace_all(s, "-\n", "");
  replace_all(s, "\n", " ");
  if (s.find('&') != std::string::npos) {
    replace_all(s, "&quot;", "\"");
    replace_all(s, "&amp;", "&");
    replace_all(s, "&lt;", "<");
    replace_all(s, "&gt;", ">");
  }
  s = " " + s + " ";
  std::string a;
  for (char c : s) {
    if (is_13a_symbol(static_cast<unsigned char>(c))) {
      a += ' ';
      a += c;
      a += ' ';
    } else {
      a += c;
    }
  }
  std::string b;  // ([^0-9])([\.,]) -> \1 \2
  for (size_t i = 0; i < a.size();) {
    if (i + 1 < a.size() && !is_digit(a[i]) && (a[i + 1] == '.' || a[i + 1] == ',')) {
      b += a[i];
      b += ' ';
      b += a[i + 1];
      b += ' ';
      i += 2;
    } else {
      b += a[i++];
    }
  }
  std::string c;  // ([\.,])([^0-9]) -> ' \1 \2'
  for (size_t i = 0; i < b.size();) {
    if (i + 1 < b.size() && (b[i] == '.' || b[i] == ',') && !is_digit(b[i + 1])) {
      c += ' ';
      c += b[i];
      c += ' ';
      c += b[i + 1];
      i += 2;
    } else {
      c += b[i++];
    }
  }
  std::string d;  // ([0-9])(-) -> \1 \2
  for (size_t i = 0; i < c.size();) {
    if (i + 1 < c.size() && is_digit(c[i]) && c[i + 1] == '-') {
      d += c[i];
      d += " - ";
      i += 2;
    } else {
      d += c[i++];
    }
  }
  std::string out;
  for (const auto& token : split_whitespace(d)) out += (out.empty() ? "" : " ") + token;
  return out;
}

// ---- BLEU ---------------------------------------------------------------------------------------------

void BleuOptions::validate() const {
  MOE_CHECK(smooth_method == "exp" || smooth_method == "floor" || smooth_method == "add-k" || smooth_method == "none",
            "BleuOptions.smooth_method must be one of exp, floor, add-k, none; got '", smooth_method, "'");
}

std::string BleuOptions::signature(int64_t num_refs) const {
  return "nrefs:" + std::to_string(num_refs) + "|case:" + (lowercase ? "lc" : "mixed") +
         "|eff:" + (effective_order ? "yes" : "no") + "|tok:13a|smooth:" + smooth_method +
         // BLEUSignature: a method with a parameter shows it, "floor[0.10]".
         (smooth_method == "floor" || smooth_method == "add-k"
              ? "[" + format_fixed(smooth_value >= 0 ? smooth_value : (smooth_method == "floor" ? 0.1 : 1.0), 2) + "]"
              : "") +
         "|version:" + kVersion;
}

BleuStats& BleuStats::operator+=(const BleuStats& other) {
  sys_len += other.sys_len;
  ref_len += other.ref_len;
  for (int n = 0; n < 4; ++n) {
    correct[n] += other.correct[n];
    total[n] += other.total[n];
  }
  return *this;
}

BleuStats bleu_segment_stats(const std::string& hypothesis, const std::vector<std::string>& references,
                             const BleuOptions& options) {
  auto prepare = [&](const std::string& s) {
    return split_whitespace(tokenize_13a(rstrip_whitespace(options.lowercase ? lowercase_utf8(s) : s)));
  };
  const auto hyp = prepare(hypothesis);
  BleuStats stats;
  stats.sys_len = static_cast<int64_t>(hyp.size());
  std::vector<Counts> max_ref(4);
  int64_t closest_diff = -1, closest_len = -1;
  for (const auto& reference : references) {
    const auto ref = prepare(reference);
    const int64_t len = static_cast<int64_t>(ref.size());
    const int64_t diff = std::llabs(stats.sys_len - len);
    if (closest_diff == -1 || diff < closest_diff) {
      closest_diff = diff;
      closest_len = len;
    } else if (diff == closest_diff && len < closest_len) {
      closest_len = len;
    }
    for (int n = 1; n <= 4; ++n) {
      for (const auto& [gram, count] : word_ngrams(ref, n)) {
        auto& slot = max_ref[n - 1][gram];
        slot = std::max(slot, count);
      }
    }
  }
  stats.ref_len = std::max<int64_t>(closest_len, 0);
  for (int n = 1; n <= 4; ++n) {
    stats.total[n - 1] = std::max<int64_t>(0, stats.sys_len - n + 1);
    for (const auto& [gram, count] : word_ngrams(hyp, n)) {
      auto it = max_ref[n - 1].find(gram);
      if (it != max_ref[n - 1].end()) stats.correct[n - 1] += std::min(count, it->second);
    }
  }
  return stats;
}

namespace sacrebleu_detail {

BleuFormula bleu_formula(std::array<PyNum, 4> correct, std::array<PyNum, 4> total, int64_t sys_len, int64_t ref_len,
                         const BleuOptions& options) {
  BleuFormula out;
  if (sys_len < ref_len) {
    out.bp = sys_len > 0 ? std::exp(1.0 - static_cast<double>(ref_len) / static_cast<double>(sys_len)) : 0.0;
  }
  std::array<PyNum, 4> precisions{};
  if (std::all_of(correct.begin(), correct.end(), [](PyNum c) { return c.value == 0; })) return out;
  // BLEU.SMOOTH_DEFAULTS: floor 0.1, add-k 1.
  const double k = options.smooth_value >= 0 ? options.smooth_value : (options.smooth_method == "floor" ? 0.1 : 1.0);
  PyNum smooth_mteval = PyNum::py(1.0);
  int eff_order = 4;
  for (int n = 0; n < 4; ++n) {
    if (options.smooth_method == "add-k" && n > 0) {
      correct[n] = correct[n] + PyNum::py(k);
      total[n] = total[n] + PyNum::py(k);
    }
    if (total[n].value == 0) break;
    if (options.effective_order) eff_order = n + 1;
    if (correct[n].value == 0) {
      if (options.smooth_method == "exp") {
        smooth_mteval = smooth_mteval * PyNum::py(2);
        precisions[n] = PyNum::py(100.0) / (smooth_mteval * total[n]);
      } else if (options.smooth_method == "floor") {
        precisions[n] = PyNum::py(100.0 * k) / total[n];
      }
    } else {
      precisions[n] = PyNum::py(100.0) * correct[n] / total[n];
    }
  }
  // my_log, summed left to right as CPython <= 3.11's sum() does.
  double log_sum = 0;
  for (int n = 0; n < eff_order; ++n) {
    log_sum += precisions[n].value == 0 ? -9999999999.0 : std::log(precisions[n].value);
  }
  for (int n = 0; n < 4; ++n) out.precisions[n] = precisions[n].value;
  out.score = out.bp * std::exp(log_sum / eff_order);
  return out;
}

PyNum chrf_formula(const PyNum* stats, size_t orders, const ChrFOptions& options) {
  const PyNum eps = PyNum::py(1e-16), factor = PyNum::py(options.beta * options.beta);
  const PyNum one_plus_factor = PyNum::py(1.0 + factor.value);
  PyNum score = PyNum::py(0.0), avg_prec = PyNum::py(0.0), avg_rec = PyNum::py(0.0);
  int effective_order = 0;
  for (size_t i = 0; i < orders; ++i) {
    const PyNum n_hyp = stats[3 * i], n_ref = stats[3 * i + 1], n_match = stats[3 * i + 2];
    const PyNum prec = n_hyp.value > 0 ? n_match / n_hyp : eps;
    const PyNum rec = n_ref.value > 0 ? n_match / n_ref : eps;
    const PyNum denom = factor * prec + rec;
    score = score + (denom.value > 0 ? one_plus_factor * prec * rec / denom : eps);
    if (n_hyp.value > 0 && n_ref.value > 0) {
      avg_prec = avg_prec + prec;
      avg_rec = avg_rec + rec;
      ++effective_order;
    }
  }
  if (options.eps_smoothing) return PyNum::py(100) * score / PyNum::py(static_cast<double>(orders));
  if (effective_order == 0) return PyNum::py(0.0);
  avg_prec = avg_prec / PyNum::py(effective_order);
  avg_rec = avg_rec / PyNum::py(effective_order);
  if ((avg_prec + avg_rec).value == 0) return PyNum::py(0.0);
  PyNum f = one_plus_factor * avg_prec * avg_rec;
  f = f / (factor * avg_prec + avg_rec);
  return PyNum::py(100) * f;
}

}  // namespace sacrebleu_detail

BleuScore bleu_from_stats(const BleuStats& stats, const BleuOptions& options) {
  options.validate();
  std::array<sacrebleu_detail::PyNum, 4> correct{}, total{};
  for (int n = 0; n < 4; ++n) {
    correct[n] = sacrebleu_detail::PyNum::py(static_cast<double>(stats.correct[n]));
    total[n] = sacrebleu_detail::PyNum::py(static_cast<double>(stats.total[n]));
  }
  const auto f = sacrebleu_detail::bleu_formula(correct, total, stats.sys_len, stats.ref_len, options);
  BleuScore out;
  out.stats = stats;
  out.score = f.score;
  out.precisions = f.precisions;
  out.bp = f.bp;
  return out;
}

namespace {
void check_streams(size_t hyps, const RefStreams& refs, const char* what) {
  MOE_CHECK(!refs.empty(), what, ": at least one reference stream is needed");
  for (size_t r = 0; r < refs.size(); ++r) {
    MOE_CHECK(refs[r].size() == hyps, what, ": reference stream ", r + 1, " has ", refs[r].size(),
              " lines but the hypotheses have ", hyps);
  }
}
}  // namespace

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const RefStreams& refs, const BleuOptions& options) {
  options.validate();
  check_streams(hypotheses.size(), refs, "corpus_bleu");
  BleuStats total;
  std::vector<std::string> segment_refs(refs.size());
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    for (size_t r = 0; r < refs.size(); ++r) segment_refs[r] = refs[r][i];
    total += bleu_segment_stats(hypotheses[i], segment_refs, options);
  }
  return bleu_from_stats(total, options);
}

BleuScore sentence_bleu(const std::string& hypothesis, const std::vector<std::string>& references,
                        BleuOptions options) {
  options.effective_order = true;
  return bleu_from_stats(bleu_segment_stats(hypothesis, references, options), options);
}

std::string BleuScore::to_string(int width) const {
  const double ratio = stats.ref_len > 0 ? static_cast<double>(stats.sys_len) / stats.ref_len : 0.0;
  return "BLEU = " + format_fixed(score, width) + " " + format_fixed(precisions[0], 1) + "/" +
         format_fixed(precisions[1], 1) + "/" + format_fixed(precisions[2], 1) + "/" + format_fixed(precisions[3], 1) +
         " (BP = " + format_fixed(bp, 3) + " ratio = " + format_fixed(ratio, 3) +
         " hyp_len = " + std::to_string(stats.sys_len) + " ref_len = " + std::to_string(stats.ref_len) + ")";
}

// ---- chrF -----------------------------------------------------------------------------------------------

void ChrFOptions::validate() const {
  MOE_CHECK(char_order >= 0 && word_order >= 0 && char_order + word_order >= 1,
            "ChrFOptions: char_order and word_order must be >= 0 and not both 0, got ", char_order, " and ",
            word_order);
  MOE_CHECK(beta > 0, "ChrFOptions.beta must be > 0, got ", beta);
}

std::string ChrFOptions::name() const { return "chrF" + format_fixed(beta, 0) + std::string(word_order, '+'); }

std::string ChrFOptions::signature(int64_t num_refs) const {
  return "nrefs:" + std::to_string(num_refs) + "|case:" + (lowercase ? "lc" : "mixed") +
         "|eff:yes|nc:" + std::to_string(char_order) + "|nw:" + std::to_string(word_order) +
         "|space:no|version:" + kVersion;
}

namespace {

constexpr const char* kPunctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

struct ChrFNgrams {
  std::vector<Counts> orders;  // char orders, then word orders
};

ChrFNgrams chrf_ngrams(const std::string& raw, const ChrFOptions& options) {
  const std::string text = options.lowercase ? lowercase_utf8(raw) : raw;
  ChrFNgrams out;
  std::string joined;
  for (const auto& piece : split_whitespace(text)) joined += piece;
  const std::u32string chars = to_code_points(joined);
  for (int n = 1; n <= options.char_order; ++n) {
    Counts counts;
    for (size_t i = 0; i + n <= chars.size(); ++i) {
      std::string key;
      for (int k = 0; k < n; ++k) encode(chars[i + k], key);
      ++counts[key];
    }
    out.orders.push_back(std::move(counts));
  }
  if (options.word_order > 0) {
    std::vector<std::string> words;
    for (const auto& w : split_whitespace(text)) {
      const std::u32string cp = to_code_points(w);
      auto is_punct = [](char32_t c) {
        return c < 0x80 && std::string(kPunctuation).find(static_cast<char>(c)) != std::string::npos;
      };
      if (cp.size() > 1 && is_punct(cp.back())) {
        words.push_back(w.substr(0, w.size() - 1));
        words.push_back(w.substr(w.size() - 1));
      } else if (cp.size() > 1 && is_punct(cp.front())) {
        words.push_back(w.substr(0, 1));
        words.push_back(w.substr(1));
      } else {
        words.push_back(w);
      }
    }
    for (int n = 1; n <= options.word_order; ++n) out.orders.push_back(word_ngrams(words, n));
  }
  return out;
}

double chrf_f_score(const std::vector<int64_t>& stats, const ChrFOptions& options) {
  std::vector<sacrebleu_detail::PyNum> values(stats.size());
  for (size_t i = 0; i < stats.size(); ++i) values[i] = sacrebleu_detail::PyNum::py(static_cast<double>(stats[i]));
  return sacrebleu_detail::chrf_formula(values.data(), stats.size() / 3, options).value;
}

}  // namespace

std::vector<int64_t> chrf_segment_stats(const std::string& hypothesis, const std::vector<std::string>& references,
                                        const ChrFOptions& options) {
  options.validate();
  MOE_CHECK(!references.empty(), "chrf_segment_stats: at least one reference is needed");
  const size_t orders = static_cast<size_t>(options.char_order + options.word_order);
  const auto hyp = chrf_ngrams(rstrip_whitespace(hypothesis), options);
  std::vector<int64_t> best;
  double best_f = -1.0;
  for (const auto& reference : references) {
    const auto ref = chrf_ngrams(rstrip_whitespace(reference), options);
    std::vector<int64_t> stats;
    for (size_t o = 0; o < orders; ++o) {
      int64_t hyp_count = 0, ref_count = 0, match = 0;
      for (const auto& [gram, count] : hyp.orders[o]) {
        hyp_count += count;
        auto it = ref.orders[o].find(gram);
        if (it != ref.orders[o].end()) match += std::min(count, it->second);
      }
      for (const auto& entry : ref.orders[o]) ref_count += entry.second;
      stats.insert(stats.end(), {ref_count > 0 ? hyp_count : 0, ref_count, match});
    }
    // The reference with the best segment-level F wins (the first of equals).
    const double f = chrf_f_score(stats, options);
    if (f > best_f) {
      best_f = f;
      best = std::move(stats);
    }
  }
  return best;
}

ChrFScore corpus_chrf(const std::vector<std::string>& hypotheses, const RefStreams& refs, const ChrFOptions& options) {
  options.validate();
  check_streams(hypotheses.size(), refs, "corpus_chrf");
  std::vector<int64_t> total(static_cast<size_t>(3 * (options.char_order + options.word_order)), 0);
  std::vector<std::string> segment_refs(refs.size());
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    for (size_t r = 0; r < refs.size(); ++r) segment_refs[r] = refs[r][i];
    const auto best = chrf_segment_stats(hypotheses[i], segment_refs, options);
    for (size_t k = 0; k < total.size(); ++k) total[k] += best[k];
  }
  ChrFScore out;
  out.stats = total;
  out.score = chrf_f_score(total, options);
  out.name = options.name();
  return out;
}

std::string ChrFScore::to_string(int width) const { return name + " = " + format_fixed(score, width); }

}  // namespace moe
