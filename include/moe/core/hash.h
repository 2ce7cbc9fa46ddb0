// FNV-1a 64-bit hashing (Fowler, Noll, Vo): content keys for caches (corpus, tokenizer), the
// deterministic corpus split, and checkpoint checksums. Not cryptographic; detects accidental
// corruption and truncation, not tampering.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace moe {

/// The standard FNV-1a 64 offset basis (0xcbf29ce484222325).
inline constexpr uint64_t kFnv1a64Offset = 14695981039346656037ULL;
/// The offset this project used until December 2026, one digit short of the standard basis. Kept
/// where a value must not change: the default corpus's train/valid/test split (so the corpus stays
/// the same), and reading checkpoint files written with it (header MOECKPT1).
inline constexpr uint64_t kFnv1a64OffsetBefore202612 = 1469598103934665603ULL;

/// Continues hash `h` over `n` bytes (start with kFnv1a64Offset), so data can be hashed in chunks.
inline uint64_t fnv1a64(uint64_t h, const void* data, size_t n) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= bytes[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/// The hash of `bytes` (standard FNV-1a 64: fnv1a64("a") == 0xaf63dc4c8601ec8c).
inline uint64_t fnv1a64(const std::string& bytes) { return fnv1a64(kFnv1a64Offset, bytes.data(), bytes.size()); }

}  // namespace moe
