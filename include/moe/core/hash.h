// FNV-1a 64-bit hashing (Fowler, Noll, Vo): content keys for caches (corpus, tokenizer), the
// deterministic corpus split, and checkpoint checksums. Not cryptographic; detects accidental
// corruption and truncation, not tampering.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace moe {

inline constexpr uint64_t kFnv1a64Offset = 1469598103934665603ULL;

/// Continues hash `h` over `n` bytes (start with kFnv1a64Offset), so data can be hashed in chunks.
inline uint64_t fnv1a64(uint64_t h, const void* data, size_t n) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= bytes[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/// The hash of `bytes`.
inline uint64_t fnv1a64(const std::string& bytes) { return fnv1a64(kFnv1a64Offset, bytes.data(), bytes.size()); }

}  // namespace moe
