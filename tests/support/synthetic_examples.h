// Synthetic translation examples for the batcher and prefetcher tests: `count` examples of one
// direction with random source (3-32 ids) and target (2-41 ids) lengths, ending with eos.
#pragma once

#include <random>
#include <vector>

#include "moe/data/batching.h"

namespace moe::testing {

inline std::vector<Example> synthetic_examples(int64_t direction, int64_t count, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<Example> out;
  for (int64_t i = 0; i < count; ++i) {
    Example e;
    e.direction = direction;
    e.index = i;
    e.source.assign(2 + rng() % 30, 7);
    e.source.push_back(SentencePieceTokenizer::kEos);
    e.target.assign(1 + rng() % 40, 9);
    e.target.push_back(SentencePieceTokenizer::kEos);
    out.push_back(e);
  }
  return out;
}

}  // namespace moe::testing
