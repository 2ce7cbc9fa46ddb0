// Translation with beam search over the Transformer's key/value cache (see moe/eval/translate.h).
#include "moe/eval/translate.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <numeric>

#include "moe/core/error.h"

namespace moe {

at::Tensor TransformerBeamDecoder::step(const at::Tensor& tokens) {
  return model_->decode_step(state_, tokens.to(state_.encoder.output.device()));
}

void TransformerBeamDecoder::select(const at::Tensor& index) {
  state_.select(index.to(state_.encoder.output.device()));
}

std::vector<Hypothesis> translate_batch(TransformerModel& model, const at::Tensor& source,
                                        const TranslateOptions& options) {
  MOE_CHECK(source.defined() && source.dim() == 2 && source.scalar_type() == at::kLong,
            "translate_batch: source must be [B, S] int64");
  torch::NoGradGuard no_grad;
  const int64_t K = options.search.beam;
  auto device = model->embed->weight.device();
  auto src = source.to(device);
  auto encoder = model->encode(src);
  encoder.output = encoder.output.repeat_interleave(K, 0);
  encoder.padding = encoder.padding.repeat_interleave(K, 0);
  auto lengths_t = source.ne(model->options.padding_idx).sum(1).cpu();
  std::vector<int64_t> lengths(lengths_t.data_ptr<int64_t>(), lengths_t.data_ptr<int64_t>() + lengths_t.numel());
  TransformerBeamDecoder decoder(model, model->start_decoding(encoder));
  auto search = options.search;
  // Decoding step s reads position s; the EOS after max_len tokens sits at position max_len.
  const int64_t cap = model->options.max_positions - 1;
  search.max_len_cap = search.max_len_cap > 0 ? std::min(search.max_len_cap, cap) : cap;
  return beam_search(decoder, lengths, search);
}

std::vector<std::string> translate(TransformerModel& model, const SentencePieceTokenizer& tokenizer,
                                   const std::string& target_tag, const std::vector<std::string>& sentences,
                                   const TranslateOptions& options) {
  const int tag = tokenizer.piece_id(target_tag);
  MOE_CHECK(tag > SentencePieceTokenizer::kEos, "translate: the tokenizer has no language tag '", target_tag, "'");
  MOE_CHECK(options.max_length >= 3, "TranslateOptions.max_length must be >= 3, got ", options.max_length);
  MOE_CHECK(options.max_tokens >= options.max_length && options.max_tokens <= (1 << 22),
            "TranslateOptions.max_tokens must be in [max_length=", options.max_length, ", 4194304], got ",
            options.max_tokens);
  model->eval();
  std::vector<std::vector<int64_t>> encoded(sentences.size());
  for (size_t i = 0; i < sentences.size(); ++i) {
    auto ids = tokenizer.encode(sentences[i]);
    auto& e = encoded[i];
    e.push_back(tag);
    const size_t room = static_cast<size_t>(options.max_length - 2);
    e.insert(e.end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(std::min(room, ids.size())));
    e.push_back(SentencePieceTokenizer::kEos);
  }
  std::vector<size_t> order(sentences.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return encoded[a].size() < encoded[b].size(); });
  std::vector<std::string> out(sentences.size());
  size_t start = 0;
  while (start < order.size()) {
    size_t end = start;
    size_t longest = 0;
    while (end < order.size()) {
      const size_t len = std::max(longest, encoded[order[end]].size());
      if (end > start && static_cast<int64_t>(len * (end - start + 1)) > options.max_tokens) break;
      longest = len;
      ++end;
    }
    auto source = at::zeros({static_cast<int64_t>(end - start), static_cast<int64_t>(longest)}, at::kLong);
    for (size_t r = start; r < end; ++r) {
      const auto& e = encoded[order[r]];
      source[static_cast<int64_t>(r - start)]
          .narrow(0, 0, static_cast<int64_t>(e.size()))
          .copy_(at::tensor(e, at::kLong));
    }
    auto hyps = translate_batch(model, source, options);
    for (size_t r = start; r < end; ++r) {
      const auto& t = hyps[r - start].tokens;
      out[order[r]] = tokenizer.decode(std::vector<int>(t.begin(), t.end()));
    }
    start = end;
  }
  return out;
}

}  // namespace moe
