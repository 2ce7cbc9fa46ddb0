// numpy's SeedSequence, PCG64 and Generator bounded draws; see moe/eval/numpy_generator.h. Each
// function names the numpy source it follows (numpy 2.x: numpy/random/bit_generator.pyx, _pcg64.pyx,
// src/pcg64/pcg64.h, src/distributions/distributions.c).
#include "moe/eval/numpy_generator.h"

#include <random>

#include "moe/core/error.h"

namespace moe {
namespace {

__extension__ typedef unsigned __int128 u128;  // GCC/Clang 128-bit integers, as pcg64.h uses them

// bit_generator.pyx: the hash constants of O'Neill's seed_seq, as numpy spells them.
constexpr uint32_t kInitA = 0x43b0d7e5, kMultA = 0x931e8875, kInitB = 0x8b51f9dd, kMultB = 0x58f38ded;
constexpr uint32_t kMixMultL = 0xca01f9dd, kMixMultR = 0x4973f715;
constexpr int kXShift = 16;
constexpr size_t kPoolSize = 4;

uint32_t hashmix(uint32_t value, uint32_t& hash_const) {
  value ^= hash_const;
  hash_const *= kMultA;
  value *= hash_const;
  value ^= value >> kXShift;
  return value;
}

uint32_t mix(uint32_t x, uint32_t y) {
  uint32_t result = kMixMultL * x - kMixMultR * y;
  result ^= result >> kXShift;
  return result;
}

// pcg64.h: PCG_DEFAULT_MULTIPLIER_128.
constexpr u128 kPcgMultiplier = (static_cast<u128>(2549297995355413924ULL) << 64) | 4865540595714422341ULL;

}  // namespace

SeedSequence::SeedSequence(const std::vector<uint32_t>& entropy) : pool_(kPoolSize, 0) {
  // SeedSequence.mix_entropy (no spawn key).
  uint32_t hash_const = kInitA;
  for (size_t i = 0; i < pool_.size(); ++i) pool_[i] = hashmix(i < entropy.size() ? entropy[i] : 0, hash_const);
  for (size_t src = 0; src < pool_.size(); ++src)
    for (size_t dst = 0; dst < pool_.size(); ++dst)
      if (src != dst) pool_[dst] = mix(pool_[dst], hashmix(pool_[src], hash_const));
  for (size_t src = pool_.size(); src < entropy.size(); ++src)
    for (size_t dst = 0; dst < pool_.size(); ++dst) pool_[dst] = mix(pool_[dst], hashmix(entropy[src], hash_const));
}

SeedSequence SeedSequence::from_integer(uint64_t seed) {
  // _int_to_uint32_array: 32-bit words, lowest first; zero is one word.
  std::vector<uint32_t> words;
  do {
    words.push_back(static_cast<uint32_t>(seed & 0xFFFFFFFFu));
    seed >>= 32;
  } while (seed != 0);
  return SeedSequence(words);
}

std::vector<uint64_t> SeedSequence::generate_state_u64(int64_t n_words) const {
  MOE_CHECK(n_words >= 0 && n_words <= (1 << 20), "SeedSequence: n_words is ", n_words, "; allowed 0..", 1 << 20);
  uint32_t hash_const = kInitB;
  std::vector<uint32_t> words(static_cast<size_t>(2 * n_words));
  for (size_t i = 0; i < words.size(); ++i) {
    uint32_t value = pool_[i % pool_.size()];
    value ^= hash_const;
    hash_const *= kMultB;
    value *= hash_const;
    value ^= value >> kXShift;
    words[i] = value;
  }
  std::vector<uint64_t> out(static_cast<size_t>(n_words));
  for (size_t i = 0; i < out.size(); ++i) out[i] = words[2 * i] | (static_cast<uint64_t>(words[2 * i + 1]) << 32);
  return out;
}

Pcg64::Pcg64(const SeedSequence& seed) {
  // _pcg64.pyx: generate_state(4, np.uint64) gives (state high, state low, inc high, inc low);
  // pcg_setseq_128_srandom_r.
  const auto words = seed.generate_state_u64(4);
  const u128 init_state = (static_cast<u128>(words[0]) << 64) | words[1];
  const u128 init_seq = (static_cast<u128>(words[2]) << 64) | words[3];
  const u128 increment = (init_seq << 1u) | 1u;
  u128 state = 0;
  state = state * kPcgMultiplier + increment;
  state += init_state;
  state = state * kPcgMultiplier + increment;
  state_high_ = static_cast<uint64_t>(state >> 64), state_low_ = static_cast<uint64_t>(state);
  increment_high_ = static_cast<uint64_t>(increment >> 64), increment_low_ = static_cast<uint64_t>(increment);
}

uint64_t Pcg64::next_uint64() {
  // pcg_setseq_128_xsl_rr_64_random_r: step, then rotate (high ^ low) right by the top 6 bits.
  const u128 increment = (static_cast<u128>(increment_high_) << 64) | increment_low_;
  const u128 state = ((static_cast<u128>(state_high_) << 64) | state_low_) * kPcgMultiplier + increment;
  state_high_ = static_cast<uint64_t>(state >> 64), state_low_ = static_cast<uint64_t>(state);
  const uint64_t high = state_high_, low = state_low_;
  const auto rot = static_cast<unsigned>(high >> 58u);
  const uint64_t x = high ^ low;
  return (x >> rot) | (x << ((64u - rot) & 63u));
}

uint32_t Pcg64::next_uint32() {
  // pcg64_next32: the low half now, the high half on the next call.
  if (has_uint32_) {
    has_uint32_ = false;
    return uinteger_;
  }
  const uint64_t next = next_uint64();
  has_uint32_ = true;
  uinteger_ = static_cast<uint32_t>(next >> 32);
  return static_cast<uint32_t>(next & 0xFFFFFFFFu);
}

NumpyGenerator::NumpyGenerator(uint64_t seed) : bits_(SeedSequence::from_integer(seed)) {}

NumpyGenerator NumpyGenerator::from_entropy() {
  // SeedSequence(None) draws 128 bits from the OS (secrets.randbits(128)).
  std::random_device device;
  std::vector<uint32_t> entropy(4);
  for (auto& word : entropy) word = device();
  return NumpyGenerator(SeedSequence(entropy));
}

NumpyGenerator::BoundedDraws::BoundedDraws(Pcg64& bits, int64_t n) : bits_(&bits) {
  MOE_CHECK(n >= 1 && n <= (int64_t{1} << 32), "choice: population size is ", n, "; allowed 1..2^32");
  range_ = static_cast<uint32_t>(n - 1);
}

int64_t NumpyGenerator::BoundedDraws::next() {
  // random_bounded_uint64_fill with rng <= 0xFFFFFFFF: no draw for rng 0, the raw 32 bits for
  // rng 0xFFFFFFFF, else buffered_bounded_lemire_uint32.
  if (range_ == 0) return 0;
  if (range_ == 0xFFFFFFFFu) return bits_->next_uint32();
  const uint32_t range_excl = range_ + 1;
  uint64_t m = static_cast<uint64_t>(bits_->next_uint32()) * range_excl;
  auto leftover = static_cast<uint32_t>(m & 0xFFFFFFFFu);
  if (leftover < range_excl) {
    const uint32_t threshold = (UINT32_MAX - range_) % range_excl;
    while (leftover < threshold) {
      m = static_cast<uint64_t>(bits_->next_uint32()) * range_excl;
      leftover = static_cast<uint32_t>(m & 0xFFFFFFFFu);
    }
  }
  return static_cast<int64_t>(m >> 32);
}

NumpyGenerator::BoundedDraws NumpyGenerator::choice(int64_t n) { return BoundedDraws(bits_, n); }

bool NumpyGenerator::BoolDraws::next() {
  // buffered_bounded_bool with rng 1.
  if (remaining_ == 0) {
    buffer_ = bits_->next_uint32();
    remaining_ = 31;
  } else {
    buffer_ >>= 1;
    --remaining_;
  }
  return (buffer_ & 1u) != 0;
}

std::vector<int64_t> NumpyGenerator::choice(int64_t n, int64_t count) {
  MOE_CHECK(count >= 0, "choice: count is ", count, "; allowed >= 0");
  auto draws = choice(n);
  std::vector<int64_t> out(static_cast<size_t>(count));
  for (auto& value : out) value = draws.next();
  return out;
}

}  // namespace moe
