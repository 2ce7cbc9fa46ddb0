// Checkpoint files that are never half-written and never silently corrupt.
//
// Layout: the 8-byte magic "MOECKPT2", the payload size (uint64 little-endian), the FNV-1a 64-bit
// hash of the payload, then the payload (a LibTorch archive). Files with the magic "MOECKPT1"
// (before December 2026: the hash used an offset basis one digit short of the standard one) are read
// too. Writing goes to a temporary file in
// the same folder, is fsync'ed, renamed over the target and the folder fsync'ed, so a crash leaves
// either the old file or the new one. Reading checks the magic, the size and the hash, and throws
// moe::Error naming the file on any mismatch (truncated, corrupted or not a checkpoint).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace moe {

/// Writes header + payload to `path` atomically (temporary file, fsync, rename, fsync folder).
void write_checkpoint_file(const std::string& path, const std::string& payload);
/// Reads and verifies a file written by write_checkpoint_file; returns the payload.
std::string read_checkpoint_file(const std::string& path);

/// Test hook: called with the target path once a write has put half of its bytes into the temporary
/// file (before fsync and rename). Tests use it to kill the process mid-write. Empty = none.
void set_checkpoint_write_hook(std::function<void(const std::string& path)> hook);

/// Checkpoints named "checkpoint-<step>.moeckpt" in `dir`, sorted by step (oldest first).
/// Temporary files of interrupted writes are ignored.
std::vector<std::pair<int64_t, std::string>> list_step_checkpoints(const std::string& dir);
/// "<dir>/checkpoint-<step>.moeckpt".
std::string step_checkpoint_path(const std::string& dir, int64_t step);

}  // namespace moe
