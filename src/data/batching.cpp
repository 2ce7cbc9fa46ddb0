// Examples, collation and the token batcher (see moe/data/batching.h).
#include "moe/data/batching.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "moe/core/error.h"

namespace moe {
namespace {

int64_t padded_length(const Example& e) {
  return std::max<int64_t>(static_cast<int64_t>(e.source.size()), static_cast<int64_t>(e.target.size()));
}

// Greedy token-budgeted batches over `order` (indices into examples).
std::vector<std::vector<int64_t>> pack(const std::vector<Example>& examples, const std::vector<int64_t>& order,
                                       int64_t max_tokens) {
  std::vector<std::vector<int64_t>> batches;
  std::vector<int64_t> current;
  int64_t longest = 0;
  for (int64_t i : order) {
    const int64_t len = padded_length(examples[i]);
    const int64_t width = std::max(longest, len);
    if (!current.empty() && static_cast<int64_t>(current.size() + 1) * width > max_tokens) {
      batches.push_back(std::move(current));
      current.clear();
      longest = 0;
    }
    current.push_back(i);
    longest = std::max(longest, len);
  }
  if (!current.empty()) batches.push_back(std::move(current));
  return batches;
}

}  // namespace

std::vector<Example> encode_examples(const ParallelText& text, const SentencePieceTokenizer& tokenizer,
                                     const std::string& tag, int64_t direction, int64_t max_length) {
  MOE_CHECK(max_length >= 3, "encode_examples: max_length must be >= 3, got ", max_length);
  const int64_t tag_id = tokenizer.piece_id(tag);
  std::vector<Example> out;
  for (size_t i = 0; i < text.source.size(); ++i) {
    Example e;
    e.direction = direction;
    e.index = static_cast<int64_t>(i);
    e.source.push_back(tag_id);
    for (int id : tokenizer.encode(text.source[i])) e.source.push_back(id);
    e.source.push_back(SentencePieceTokenizer::kEos);
    for (int id : tokenizer.encode(text.target[i])) e.target.push_back(id);
    e.target.push_back(SentencePieceTokenizer::kEos);
    if (static_cast<int64_t>(e.source.size()) > max_length || static_cast<int64_t>(e.target.size()) > max_length)
      continue;
    out.push_back(std::move(e));
  }
  return out;
}

Batch collate(const std::vector<const Example*>& examples) {
  MOE_CHECK(!examples.empty(), "collate: no examples");
  const int64_t B = static_cast<int64_t>(examples.size());
  int64_t S = 0, T = 0;
  for (const auto* e : examples) {
    S = std::max<int64_t>(S, static_cast<int64_t>(e->source.size()));
    T = std::max<int64_t>(T, static_cast<int64_t>(e->target.size()));
  }
  auto longs = at::TensorOptions().dtype(at::kLong);
  Batch b;
  b.source = at::full({B, S}, SentencePieceTokenizer::kPad, longs);
  b.target_input = at::full({B, T}, SentencePieceTokenizer::kPad, longs);
  b.target_output = at::full({B, T}, SentencePieceTokenizer::kPad, longs);
  b.direction = at::empty({B}, longs);
  b.index = at::empty({B}, longs);
  auto src = b.source.accessor<int64_t, 2>();
  auto tin = b.target_input.accessor<int64_t, 2>();
  auto tout = b.target_output.accessor<int64_t, 2>();
  auto direction = b.direction.accessor<int64_t, 1>();  // element writes, not one select + fill_ each
  auto index = b.index.accessor<int64_t, 1>();
  for (int64_t i = 0; i < B; ++i) {
    const auto& e = *examples[i];
    for (size_t j = 0; j < e.source.size(); ++j) src[i][j] = e.source[j];
    for (size_t j = 0; j < e.target.size(); ++j) {
      tout[i][j] = e.target[j];
      tin[i][j] = j == 0 ? SentencePieceTokenizer::kBos : e.target[j - 1];
    }
    direction[i] = e.direction;
    index[i] = e.index;
    b.num_target_tokens += static_cast<int64_t>(e.target.size());
  }
  b.source_padding = b.source.eq(SentencePieceTokenizer::kPad);
  b.target_padding = b.target_output.eq(SentencePieceTokenizer::kPad);
  return b;
}

void BatcherOptions::validate() const {
  MOE_CHECK(max_tokens >= 1, "BatcherOptions.max_tokens must be >= 1, got ", max_tokens);
  MOE_CHECK(std::isfinite(temperature) && temperature > 0, "BatcherOptions.temperature must be > 0, got ", temperature);
  MOE_CHECK(bucket_chunk >= 1, "BatcherOptions.bucket_chunk must be >= 1, got ", bucket_chunk);
}

TokenBatcher::TokenBatcher(std::vector<std::vector<Example>> per_direction, BatcherOptions options)
    : examples_(std::move(per_direction)), options_(options) {
  options_.validate();
  MOE_CHECK(!examples_.empty(), "TokenBatcher: no directions");
  double total = 0;
  for (size_t d = 0; d < examples_.size(); ++d) {
    MOE_CHECK(!examples_[d].empty(), "TokenBatcher: direction ", d, " has no examples");
    total += static_cast<double>(examples_[d].size());
  }
  double norm = 0;
  for (const auto& ex : examples_) {
    probabilities_.push_back(std::pow(static_cast<double>(ex.size()) / total, 1.0 / options_.temperature));
    norm += probabilities_.back();
  }
  for (auto& p : probabilities_) p /= norm;
  state_.epoch.assign(examples_.size(), 0);
  state_.cursor.assign(examples_.size(), 0);
  batches_.resize(examples_.size());
  for (size_t d = 0; d < examples_.size(); ++d) build_epoch(d);
}

void TokenBatcher::build_epoch(size_t d) {
  const auto& ex = examples_[d];
  std::mt19937_64 rng(options_.seed * 0x9E3779B97F4A7C15ULL + d * 1000003ULL + static_cast<uint64_t>(state_.epoch[d]));
  std::vector<int64_t> order(ex.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  // Length bucketing: sort inside chunks, so batches hold similar lengths but epochs still differ.
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(options_.bucket_chunk)) {
    const auto end = order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), start + options_.bucket_chunk));
    std::stable_sort(order.begin() + static_cast<std::ptrdiff_t>(start), end,
                     [&](int64_t a, int64_t b) { return padded_length(ex[a]) < padded_length(ex[b]); });
  }
  batches_[d] = pack(ex, order, options_.max_tokens);
  std::shuffle(batches_[d].begin(), batches_[d].end(), rng);
}

Batch TokenBatcher::next() {
  // The direction of step s depends only on (seed, s): resuming at step s continues the same stream.
  std::mt19937_64 rng(options_.seed ^ (0xD1B54A32D192ED03ULL * (state_.step + 1)));
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  size_t d = 0;
  for (double acc = probabilities_[0]; u >= acc && d + 1 < probabilities_.size(); acc += probabilities_[++d]) {
  }
  if (state_.cursor[d] >= static_cast<int64_t>(batches_[d].size())) {
    ++state_.epoch[d];
    state_.cursor[d] = 0;
    build_epoch(d);
  }
  const auto& indices = batches_[d][state_.cursor[d]++];
  std::vector<const Example*> members;
  for (int64_t i : indices) members.push_back(&examples_[d][i]);
  ++state_.step;
  return collate(members);
}

void TokenBatcher::restore(const State& state) {
  MOE_CHECK(state.epoch.size() == examples_.size() && state.cursor.size() == examples_.size(),
            "TokenBatcher::restore: the state has ", state.epoch.size(), " directions, the batcher ", examples_.size());
  state_ = state;
  for (size_t d = 0; d < examples_.size(); ++d) {
    build_epoch(d);
    MOE_CHECK(state_.cursor[d] <= static_cast<int64_t>(batches_[d].size()), "TokenBatcher::restore: cursor ",
              state_.cursor[d], " of direction ", d, " is past its ", batches_[d].size(), " batches");
  }
}

std::vector<Batch> make_eval_batches(const std::vector<Example>& examples, int64_t max_tokens) {
  MOE_CHECK(max_tokens >= 1, "make_eval_batches: max_tokens must be >= 1, got ", max_tokens);
  std::vector<int64_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  std::vector<Batch> out;
  for (const auto& indices : pack(examples, order, max_tokens)) {
    std::vector<const Example*> members;
    for (int64_t i : indices) members.push_back(&examples[i]);
    out.push_back(collate(members));
  }
  return out;
}

at::Tensor batcher_state_to_tensor(const TokenBatcher::State& b) {
  std::vector<int64_t> bs{static_cast<int64_t>(b.step), static_cast<int64_t>(b.epoch.size())};
  bs.insert(bs.end(), b.epoch.begin(), b.epoch.end());
  bs.insert(bs.end(), b.cursor.begin(), b.cursor.end());
  return at::tensor(bs, at::kLong);
}

TokenBatcher::State batcher_state_from_tensor(const at::Tensor& tensor, const std::string& source) {
  auto b = tensor.to(at::kCPU, at::kLong).contiguous();
  const int64_t D = b.numel() >= 2 ? b.data_ptr<int64_t>()[1] : -1;
  MOE_CHECK(D >= 0 && b.numel() == 2 + 2 * D, source, ": malformed batcher state (", b.numel(),
            " values; expected step, D, then 2·D)");
  const int64_t* p = b.data_ptr<int64_t>();
  TokenBatcher::State state;
  state.step = static_cast<uint64_t>(p[0]);
  state.epoch.assign(p + 2, p + 2 + D);
  state.cursor.assign(p + 2 + D, p + 2 + 2 * D);
  return state;
}

}  // namespace moe
