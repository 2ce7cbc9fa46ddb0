// numpy's default random generator, bit for bit: np.random.default_rng(seed) is a PCG64 (O'Neill 2014,
// "PCG: A Family of Simple Fast Space-Efficient Statistically Good Algorithms for Random Number
// Generation"; XSL-RR output, 128-bit LCG) seeded through SeedSequence (numpy/random/bit_generator.pyx),
// and Generator.integers/choice draw bounded integers with Lemire's method (Lemire 2019, "Fast Random
// Integer Generation in an Interval"; numpy/random/src/distributions/distributions.c). sacreBLEU's
// paired significance tests resample with these draws (moe/eval/significance.h), so reproducing them is
// what makes moe-score's p-values and confidence intervals equal to sacreBLEU's.
#pragma once

#include <cstdint>
#include <vector>

namespace moe {

/// numpy.random.SeedSequence(entropy): hashes the entropy words into a pool of 4 words and expands the
/// pool into seeding state. `entropy` holds the seed's uint32 words, lowest first (numpy's
/// _coerce_to_uint32_array of a non-negative integer).
class SeedSequence {
 public:
  explicit SeedSequence(const std::vector<uint32_t>& entropy);
  /// SeedSequence(seed) for a non-negative integer seed.
  static SeedSequence from_integer(uint64_t seed);
  const std::vector<uint32_t>& pool() const { return pool_; }
  /// generate_state(n_words, np.uint64): 2·n_words uint32 words paired little-endian.
  std::vector<uint64_t> generate_state_u64(int64_t n_words) const;

 private:
  std::vector<uint32_t> pool_;
};

/// numpy.random.PCG64: a 128-bit LCG with the XSL-RR output function; next_uint32 hands out the low
/// half of a 64-bit draw and keeps the high half for the next call, as numpy's does.
class Pcg64 {
 public:
  explicit Pcg64(const SeedSequence& seed);
  uint64_t next_uint64();
  uint32_t next_uint32();

 private:
  uint64_t state_high_ = 0, state_low_ = 0, increment_high_ = 0, increment_low_ = 0;  ///< 128-bit state and increment
  bool has_uint32_ = false;
  uint32_t uinteger_ = 0;
};

/// numpy.random.Generator over a PCG64: the two draws sacreBLEU's tests make. Each call is one numpy
/// call; the generator's state carries over between calls exactly as numpy's does.
class NumpyGenerator {
 public:
  /// default_rng(seed).
  explicit NumpyGenerator(uint64_t seed);
  /// default_rng(None): seeded from the operating system's entropy (128 bits).
  static NumpyGenerator from_entropy();

  /// One numpy Generator.integers(0, n, size=count, dtype=np.int64) call (= choice(n, size, replace=True))
  /// seen as a stream: values come out in the order numpy fills its C-ordered array. Requires
  /// 1 <= n <= 2^32. Call next() `count` times, then finish() the call.
  class BoundedDraws {
   public:
    int64_t next();

   private:
    friend class NumpyGenerator;
    BoundedDraws(Pcg64& bits, int64_t n);
    Pcg64* bits_;
    uint32_t range_;  ///< n - 1
  };
  BoundedDraws choice(int64_t n);

  /// One Generator.integers(2, size=count, dtype=bool) call seen as a stream: 32 values per uint32 drawn,
  /// lowest bit first. The leftover bits of the last word are dropped when the stream is destroyed, as
  /// numpy drops them at the end of the call.
  class BoolDraws {
   public:
    bool next();

   private:
    friend class NumpyGenerator;
    explicit BoolDraws(Pcg64& bits) : bits_(&bits) {}
    Pcg64* bits_;
    uint32_t buffer_ = 0;
    int remaining_ = 0;
  };
  BoolDraws bools() { return BoolDraws(bits_); }

  /// Convenience for tests: a whole choice(n, size=count) array.
  std::vector<int64_t> choice(int64_t n, int64_t count);

 private:
  explicit NumpyGenerator(const SeedSequence& seed) : bits_(seed) {}
  Pcg64 bits_;
};

}  // namespace moe
