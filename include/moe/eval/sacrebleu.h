// BLEU and chrF/chrF++ exactly as sacreBLEU 2.6.0 computes them (Post 2018, "A Call for Clarity in
// Reporting BLEU Scores"; sacrebleu/metrics/bleu.py, chrf.py, tokenizers/tokenizer_13a.py), including
// the 13a tokenizer, the closest-reference length rule, the smoothing methods, effective order,
// multi-reference chrF and the signatures. Specification: shared/data/bleu.md. Text is UTF-8;
// whitespace follows Python's str.split()/rstrip() (Unicode), chrF counts code points.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

/// sacreBLEU's default tokenizer ("13a", mteval-v13a equivalent), returned as space-joined tokens.
std::string tokenize_13a(const std::string& segment);
/// Python's str.split(): split on Unicode whitespace, dropping empty pieces.
std::vector<std::string> split_whitespace(const std::string& text);
/// Python's str.rstrip(): remove trailing Unicode whitespace.
std::string rstrip_whitespace(const std::string& text);
/// Unicode simple lowercase of UTF-8 text (Python's str.lower() for all but a few special cases).
std::string lowercase_utf8(const std::string& text);

/// A hypothesis stream and its references: refs[r][i] is reference r of segment i.
using RefStreams = std::vector<std::vector<std::string>>;

struct BleuOptions {
  bool lowercase = false;
  std::string smooth_method = "exp";  ///< exp | floor | add-k | none
  double smooth_value = -1;           ///< floor: 0.1 and add-k: 1 when < 0
  bool effective_order = false;       ///< corpus default false; sentence_bleu uses true
  void validate() const;
  /// "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
  std::string signature(int64_t num_refs) const;
};

/// Sufficient statistics (summed over segments for corpus BLEU).
struct BleuStats {
  int64_t sys_len = 0, ref_len = 0;
  std::array<int64_t, 4> correct{}, total{};
  BleuStats& operator+=(const BleuStats& other);
};

struct BleuScore {
  double score = 0;  ///< 0..100
  std::array<double, 4> precisions{};
  double bp = 0;
  BleuStats stats;
  /// "BLEU = 48.53 85.7/66.7/54.5/37.5 (BP = 0.944 ratio = 0.944 hyp_len = 17 ref_len = 18)"
  std::string to_string(int width = 2) const;
};

/// Statistics of one segment against its references (tokenised with 13a, lowercased if asked).
BleuStats bleu_segment_stats(const std::string& hypothesis, const std::vector<std::string>& references,
                             const BleuOptions& options = {});
/// BLEU from (summed) statistics.
BleuScore bleu_from_stats(const BleuStats& stats, const BleuOptions& options = {});
/// Corpus BLEU: hypotheses[i] against refs[r][i]; throws moe::Error when stream lengths differ.
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const RefStreams& refs,
                      const BleuOptions& options = {});
/// Sentence BLEU (effective order on, as sacreBLEU's sentence_bleu).
BleuScore sentence_bleu(const std::string& hypothesis, const std::vector<std::string>& references,
                        BleuOptions options = {});

struct ChrFOptions {
  int char_order = 6;
  int word_order = 0;  ///< 2 for chrF++
  double beta = 2;
  bool lowercase = false;
  bool eps_smoothing = false;
  void validate() const;
  /// "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
  std::string signature(int64_t num_refs) const;
  /// "chrF2" or "chrF2++"
  std::string name() const;
};

struct ChrFScore {
  double score = 0;            ///< 0..100
  std::vector<int64_t> stats;  ///< [hyp_count, ref_count, match] per order (char orders, then word orders)
  std::string name;
  /// "chrF2 = 59.73"
  std::string to_string(int width = 2) const;
};

/// Statistics of one segment against its references: [hyp, ref, match] per order (char orders, then
/// word orders), from the reference with the best segment-level F.
std::vector<int64_t> chrf_segment_stats(const std::string& hypothesis, const std::vector<std::string>& references,
                                        const ChrFOptions& options = {});
/// Corpus chrF from the segments' summed statistics.
ChrFScore corpus_chrf(const std::vector<std::string>& hypotheses, const RefStreams& refs,
                      const ChrFOptions& options = {});

}  // namespace moe
