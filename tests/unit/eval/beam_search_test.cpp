// Beam search against exhaustive search and an independent greedy loop on scripted decoders whose
// next-token distribution depends on the whole prefix; batching, length penalty, max length, and
// the translation path over a real Transformer (incremental == full re-decoding).
#include "moe/eval/beam_search.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <map>

#include "moe/core/error.h"
#include "moe/eval/translate.h"
#include "moe/models/transformer.h"

namespace moe {
namespace {

constexpr int64_t kV = 6, kBos = 2, kEos = 3, kPad = 0;

// Log-probabilities of the next token given (sentence, prefix): a fixed pseudo-random function.
at::Tensor scripted_lprobs(int64_t sentence, const std::vector<int64_t>& prefix) {
  uint64_t h = 1469598103934665603ULL ^ static_cast<uint64_t>(sentence * 7919);
  for (auto t : prefix) h = (h ^ static_cast<uint64_t>(t + 1)) * 1099511628211ULL;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(h);
  auto logits = at::randn({kV}, gen, at::kDouble) * 2.0;
  return at::log_softmax(logits, 0);
}

class ScriptedDecoder : public IncrementalDecoder {
 public:
  ScriptedDecoder(int64_t sentences, int64_t beam) {
    for (int64_t s = 0; s < sentences; ++s)
      for (int64_t k = 0; k < beam; ++k) rows_.push_back({s, {}});
  }
  at::Tensor step(const at::Tensor& tokens) override {
    EXPECT_EQ(tokens.size(0), static_cast<int64_t>(rows_.size()));
    std::vector<at::Tensor> out;
    for (size_t r = 0; r < rows_.size(); ++r) {
      const int64_t t = tokens[static_cast<int64_t>(r)].item<int64_t>();
      if (t != kBos) rows_[r].second.push_back(t);
      out.push_back(scripted_lprobs(rows_[r].first, rows_[r].second));
    }
    return at::stack(out).to(at::kFloat);
  }
  void select(const at::Tensor& index) override {
    std::vector<std::pair<int64_t, std::vector<int64_t>>> next;
    for (int64_t i = 0; i < index.size(0); ++i) next.push_back(rows_[static_cast<size_t>(index[i].item<int64_t>())]);
    rows_ = std::move(next);
  }

 private:
  std::vector<std::pair<int64_t, std::vector<int64_t>>> rows_;  // (sentence, tokens so far)
};

BeamSearchOptions options(int64_t beam, int64_t max_len, double lenpen = 1.0) {
  BeamSearchOptions o;
  o.beam = beam;
  o.lenpen = lenpen;
  o.max_len_a = 0;
  o.max_len_b = max_len;
  o.bos = kBos;
  o.eos = kEos;
  o.pad = kPad;
  return o;
}

// Every sequence of 1 .. max_len tokens followed by EOS (min_len 1; EOS forced after max_len),
// tokens from the allowed set {1, 4, 5} (pad and bos are never generated), best by
// (sum of log-probabilities) / (tokens + 1)^lenpen.
Hypothesis exhaustive(int64_t sentence, int64_t max_len, double lenpen) {
  Hypothesis best;
  best.score = -INFINITY;
  std::function<void(std::vector<int64_t>&, double)> rec = [&](std::vector<int64_t>& prefix, double logp) {
    const auto lp = scripted_lprobs(sentence, prefix);
    const int64_t n = static_cast<int64_t>(prefix.size());
    if (n >= 1) {
      const double end = (logp + lp[kEos].item<double>()) / std::pow(static_cast<double>(n + 1), lenpen);
      if (end > best.score) {
        best.score = end;
        best.tokens = prefix;
      }
    }
    if (n >= max_len) return;
    for (int64_t t : {1L, 4L, 5L}) {
      prefix.push_back(t);
      rec(prefix, logp + lp[t].item<double>());
      prefix.pop_back();
    }
  };
  std::vector<int64_t> prefix;
  rec(prefix, 0.0);
  return best;
}

TEST(BeamSearchTest, WideBeamFindsTheExhaustiveOptimum) {
  const int64_t max_len = 3;
  for (double lenpen : {0.0, 1.0, 2.0}) {
    ScriptedDecoder decoder(3, 64);  // 64 >= 3^3 live prefixes and 39 endings: nothing is pruned
    auto got = beam_search(decoder, {5, 5, 5}, options(64, max_len, lenpen));
    for (int64_t s = 0; s < 3; ++s) {
      auto want = exhaustive(s, max_len, lenpen);
      EXPECT_EQ(got[s].tokens, want.tokens) << "sentence " << s << " lenpen " << lenpen;
      EXPECT_NEAR(got[s].score, want.score, 1e-5);
    }
  }
}

TEST(BeamSearchTest, BeamOneIsGreedy) {
  const int64_t max_len = 7;
  ScriptedDecoder decoder(4, 1);
  auto got = beam_search(decoder, {3, 3, 3, 3}, options(1, max_len, 0.0));
  for (int64_t s = 0; s < 4; ++s) {
    std::vector<int64_t> prefix;  // independent greedy loop over allowed tokens
    double score = 0;
    while (true) {
      auto lp = scripted_lprobs(s, prefix);
      lp[kPad] = -INFINITY;
      lp[kBos] = -INFINITY;
      if (prefix.empty()) lp[kEos] = -INFINITY;              // min_len 1
      if (static_cast<int64_t>(prefix.size()) >= max_len) {  // EOS forced after max_len tokens
        score += lp[kEos].item<double>();
        break;
      }
      const int64_t t = lp.argmax().item<int64_t>();
      score += lp[t].item<double>();
      if (t == kEos) break;
      prefix.push_back(t);
    }
    EXPECT_EQ(got[s].tokens, prefix) << "sentence " << s;
    EXPECT_NEAR(got[s].score, score, 1e-5);
  }
}

TEST(BeamSearchTest, BatchedEqualsOneSentenceAtATime) {
  std::vector<int64_t> lengths{2, 9, 4, 6, 1};
  auto o = options(3, 0, 1.0);
  o.max_len_a = 1.0;
  o.max_len_b = 2;
  ScriptedDecoder batch_decoder(5, 3);
  auto batched = beam_search(batch_decoder, lengths, o);
  for (int64_t s = 0; s < 5; ++s) {
    // A decoder for sentence s alone: shift its id so the scripted function matches.
    class Single : public ScriptedDecoder {
     public:
      explicit Single(int64_t id) : ScriptedDecoder(1, 3), id_(id) {}
      at::Tensor step(const at::Tensor& tokens) override {
        std::vector<at::Tensor> out;
        for (int64_t r = 0; r < tokens.size(0); ++r) {
          if (prefixes_.size() < static_cast<size_t>(tokens.size(0)))
            prefixes_.resize(static_cast<size_t>(tokens.size(0)));
          const int64_t t = tokens[r].item<int64_t>();
          if (t != kBos) prefixes_[static_cast<size_t>(r)].push_back(t);
          out.push_back(scripted_lprobs(id_, prefixes_[static_cast<size_t>(r)]));
        }
        return at::stack(out).to(at::kFloat);
      }
      void select(const at::Tensor& index) override {
        std::vector<std::vector<int64_t>> next;
        for (int64_t i = 0; i < index.size(0); ++i)
          next.push_back(prefixes_[static_cast<size_t>(index[i].item<int64_t>())]);
        prefixes_ = std::move(next);
      }

     private:
      int64_t id_;
      std::vector<std::vector<int64_t>> prefixes_;
    } single(s);
    auto alone = beam_search(single, {lengths[s]}, o);
    EXPECT_EQ(alone[0].tokens, batched[s].tokens) << "sentence " << s;
    EXPECT_NEAR(alone[0].score, batched[s].score, 1e-6);
    EXPECT_LE(static_cast<int64_t>(batched[s].tokens.size()), lengths[s] + 2);  // max length a·src + b
  }
}

// Step 0: token 4 (p 0.6) beats EOS (0.3) and token 5 (0.1); step 1: EOS is best.
class EosSecondDecoder : public IncrementalDecoder {
 public:
  at::Tensor step(const at::Tensor& tokens) override {
    const double eos = step_ == 0 ? 0.3 : 0.9, four = step_ == 0 ? 0.6 : 0.05;
    ++step_;
    auto p = at::tensor({1e-9, 1e-9, 1e-9, eos, four, 1.0 - eos - four}, at::kDouble);
    return p.log().to(at::kFloat).unsqueeze(0).expand({tokens.size(0), kV}).contiguous();
  }
  void select(const at::Tensor&) override {}

 private:
  int step_ = 0;
};

TEST(BeamSearchTest, EosRankedBelowTheBeamDoesNotFinish) {
  EosSecondDecoder decoder;
  auto o = options(1, 5, 1.0);
  o.min_len = 0;  // EOS allowed at once: it is the runner-up, so greedy must not stop there
  auto got = beam_search(decoder, {3}, o);
  EXPECT_EQ(got[0].tokens, (std::vector<int64_t>{4}));
  EXPECT_NEAR(got[0].score, (std::log(0.6) + std::log(0.9)) / 2.0, 1e-6);
}

TEST(BeamSearchTest, MaxLengthCapAndMinLength) {
  ScriptedDecoder decoder(2, 2);
  auto o = options(2, 50, 0.0);
  o.max_len_cap = 3;
  o.min_len = 2;
  auto got = beam_search(decoder, {4, 4}, o);
  for (const auto& h : got) {
    EXPECT_LE(h.tokens.size(), 3u);
    EXPECT_GE(h.tokens.size(), 2u);
  }
}

TEST(BeamSearchTest, InvalidOptions) {
  ScriptedDecoder d(1, 1);
  auto o = options(0, 3);
  EXPECT_THROW(beam_search(d, {1}, o), Error);
}

TEST(TranslateTest, TransformerBeamSearchEqualsFullRedecoding) {
  // Greedy decoding through the key/value cache must pick, at every step, the argmax of a full
  // teacher-forced decode of the prefix so far (an independent path through the model).
  torch::manual_seed(11);
  TransformerOptions o;
  o.vocab_size = 12;
  o.d_model = 16;
  o.heads = 2;
  o.encoder_layers = o.decoder_layers = 2;
  o.ffn_hidden = 32;
  o.moe.variant = "gshard";
  o.moe.num_experts = 4;
  TransformerModel model(o);
  model->eval();
  auto source = at::tensor({5L, 6L, 7L, 8L, 3L, 9L, 10L, 3L, 0L, 0L}).view({2, 5});
  TranslateOptions to;
  to.search = options(1, 6, 0.0);
  auto hyps = translate_batch(model, source, to);
  torch::NoGradGuard no_grad;
  for (int64_t s = 0; s < 2; ++s) {
    auto src = source[s].unsqueeze(0);
    std::vector<int64_t> prefix{kBos};
    std::vector<int64_t> generated;
    for (int64_t step = 0; step <= 6; ++step) {
      auto logits = model->decode(at::tensor(prefix, at::kLong).unsqueeze(0), model->encode(src));
      auto lp = at::log_softmax(logits[0][step], -1);
      lp[kPad] = -INFINITY;
      lp[kBos] = -INFINITY;
      if (step == 0) lp[kEos] = -INFINITY;                               // min_len 1
      const int64_t t = step >= 6 ? kEos : lp.argmax().item<int64_t>();  // EOS forced after 6 tokens
      if (t == kEos) break;
      generated.push_back(t);
      prefix.push_back(t);
    }
    EXPECT_EQ(hyps[s].tokens, generated) << "sentence " << s;
  }
}

}  // namespace
}  // namespace moe
