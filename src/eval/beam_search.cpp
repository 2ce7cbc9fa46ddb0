// Batched beam search (see moe/eval/beam_search.h).
#include "moe/eval/beam_search.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "moe/core/error.h"

namespace moe {

void BeamSearchOptions::validate() const {
  MOE_CHECK(beam >= 1 && beam <= kMaxBeam, "BeamSearchOptions.beam must be in [1, ", kMaxBeam, "], got ", beam);
  MOE_CHECK(std::isfinite(lenpen) && lenpen >= 0 && lenpen <= 10, "BeamSearchOptions.lenpen must be in [0, 10], got ",
            lenpen);
  MOE_CHECK(std::isfinite(max_len_a) && max_len_a >= 0 && max_len_a <= 100,
            "BeamSearchOptions.max_len_a must be in [0, 100], got ", max_len_a);
  MOE_CHECK(max_len_b >= 1 && max_len_b <= 4096, "BeamSearchOptions.max_len_b must be in [1, 4096], got ", max_len_b);
  MOE_CHECK(min_len >= 0, "BeamSearchOptions.min_len must be >= 0, got ", min_len);
  MOE_CHECK(max_len_cap == -1 || max_len_cap >= 1, "BeamSearchOptions.max_len_cap must be -1 or >= 1, got ",
            max_len_cap);
}

std::vector<Hypothesis> beam_search(IncrementalDecoder& decoder, const std::vector<int64_t>& source_lengths,
                                    const BeamSearchOptions& o) {
  o.validate();
  const int64_t B = static_cast<int64_t>(source_lengths.size()), K = o.beam;
  const double kNegInf = -std::numeric_limits<double>::infinity();
  // Per sentence: at most max_len tokens before the EOS, at least min_len (fairseq's indexing).
  std::vector<int64_t> max_len(B), min_len(B);
  for (int64_t i = 0; i < B; ++i) {
    max_len[i] =
        std::max<int64_t>(1, static_cast<int64_t>(o.max_len_a * static_cast<double>(source_lengths[i])) + o.max_len_b);
    if (o.max_len_cap > 0) max_len[i] = std::min(max_len[i], o.max_len_cap);
    min_len[i] = std::min(o.min_len, max_len[i]);
  }
  std::vector<std::vector<Hypothesis>> finished(B);
  std::vector<Hypothesis> best(B);
  if (B == 0) return best;

  // Live state: `active` sentences, each with K hypotheses (rows a·K .. a·K + K − 1).
  std::vector<int64_t> active(B);
  for (int64_t i = 0; i < B; ++i) active[i] = i;
  std::vector<std::vector<int64_t>> tokens(B * K);  // per live row, generated tokens
  std::vector<double> scores(B * K, 0.0);           // per live row, summed log-probabilities
  for (int64_t i = 0; i < B; ++i)
    for (int64_t k = 1; k < K; ++k) scores[i * K + k] = kNegInf;  // step 0: only beam 0 (no duplicates)
  auto last = at::full({B * K}, o.bos, at::kLong);

  for (int64_t step = 0; !active.empty(); ++step) {
    auto lprobs = decoder.step(last).to(at::kDouble).cpu();  // [A·K, V]
    const int64_t A = static_cast<int64_t>(active.size()), V = lprobs.size(1);
    MOE_CHECK(lprobs.size(0) == A * K, "beam_search: decoder returned ", lprobs.size(0), " rows, expected ", A * K);
    if (o.pad >= 0 && o.pad < V) lprobs.select(1, o.pad).fill_(kNegInf);
    if (o.bos >= 0 && o.bos < V) lprobs.select(1, o.bos).fill_(kNegInf);
    if (o.unk >= 0 && o.unk < V) lprobs.select(1, o.unk).fill_(kNegInf);
    for (int64_t a = 0; a < A; ++a) {
      if (step < min_len[active[a]]) lprobs.narrow(0, a * K, K).select(1, o.eos).fill_(kNegInf);
      if (step >= max_len[active[a]]) {  // max_len tokens generated: EOS only
        auto rows = lprobs.narrow(0, a * K, K);
        auto eos_col = rows.select(1, o.eos).clone();
        rows.fill_(kNegInf);
        rows.select(1, o.eos).copy_(eos_col);
      }
    }
    auto total = lprobs + at::tensor(scores, at::kDouble).view({A * K, 1});
    auto flat = total.view({A, K * V});
    const int64_t C = std::min<int64_t>(2 * K, K * V);
    auto top = flat.topk(C, 1, /*largest=*/true, /*sorted=*/true);
    auto top_scores = std::get<0>(top).contiguous(), top_index = std::get<1>(top).contiguous();
    const double* ts = top_scores.data_ptr<double>();
    const int64_t* ti = top_index.data_ptr<int64_t>();

    std::vector<int64_t> next_active, keep_rows, next_last;
    std::vector<std::vector<int64_t>> next_tokens;
    std::vector<double> next_scores;
    for (int64_t a = 0; a < A; ++a) {
      const int64_t sentence = active[a];
      auto& done = finished[sentence];
      std::vector<int64_t> rows, toks;
      std::vector<double> sc;
      for (int64_t c = 0; c < C; ++c) {
        const double s = ts[a * C + c];
        if (s == kNegInf) break;
        const int64_t beam_row = a * K + ti[a * C + c] / V, token = ti[a * C + c] % V;
        if (token == o.eos) {
          // Like fairseq, only an EOS ranked within the top `beam` finishes a hypothesis (so beam 1
          // is greedy); a lower-ranked EOS is dropped.
          if (c < K && static_cast<int64_t>(done.size()) < K) {
            Hypothesis h;
            h.tokens = tokens[beam_row];
            h.score = s / std::pow(static_cast<double>(step + 1), o.lenpen);
            done.push_back(std::move(h));
          }
        } else if (static_cast<int64_t>(rows.size()) < K) {
          rows.push_back(beam_row);
          toks.push_back(token);
          sc.push_back(s);
        }
      }
      const bool sentence_done = static_cast<int64_t>(done.size()) >= K || rows.empty();
      if (sentence_done) continue;
      while (static_cast<int64_t>(rows.size()) < K) {  // pad with dead copies (score -inf)
        rows.push_back(rows.front());
        toks.push_back(toks.front());
        sc.push_back(kNegInf);
      }
      next_active.push_back(sentence);
      for (int64_t k = 0; k < K; ++k) {
        keep_rows.push_back(rows[k]);
        next_last.push_back(toks[k]);
        auto t = tokens[rows[k]];
        t.push_back(toks[k]);
        next_tokens.push_back(std::move(t));
        next_scores.push_back(sc[k]);
      }
    }
    active = std::move(next_active);
    if (active.empty()) break;
    decoder.select(at::tensor(keep_rows, at::kLong));
    tokens = std::move(next_tokens);
    scores = std::move(next_scores);
    last = at::tensor(next_last, at::kLong);
  }
  for (int64_t i = 0; i < B; ++i) {
    auto& done = finished[i];
    MOE_CHECK(!done.empty(), "beam_search: sentence ", i, " finished without a hypothesis");
    best[i] = *std::max_element(done.begin(), done.end(),
                                [](const Hypothesis& x, const Hypothesis& y) { return x.score < y.score; });
  }
  return best;
}

}  // namespace moe
