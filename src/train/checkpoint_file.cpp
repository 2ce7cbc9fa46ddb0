// Atomic, checksummed checkpoint files (see moe/train/checkpoint_file.h).
#include "moe/train/checkpoint_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "moe/core/error.h"
#include "moe/core/hash.h"

namespace moe {
namespace {

// MOECKPT2: the checksum is standard FNV-1a 64. MOECKPT1 (before December 2026): the same with the
// offset basis one digit short (kFnv1a64OffsetBefore202612); still read.
constexpr char kMagic[8] = {'M', 'O', 'E', 'C', 'K', 'P', 'T', '2'};
constexpr char kMagicV1[8] = {'M', 'O', 'E', 'C', 'K', 'P', 'T', '1'};
constexpr size_t kHeader = 24;

std::function<void(const std::string&)>& write_hook() {
  static std::function<void(const std::string&)> hook;
  return hook;
}

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

uint64_t get_u64(const std::string& in, size_t offset) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(in[offset + i])) << (8 * i);
  return v;
}

void write_all(int fd, const char* data, size_t size, const std::string& path) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    MOE_CHECK(n > 0, "checkpoint: writing ", path, " failed: ", std::strerror(errno));
    data += n;
    size -= static_cast<size_t>(n);
  }
}

}  // namespace

void set_checkpoint_write_hook(std::function<void(const std::string& path)> hook) { write_hook() = std::move(hook); }

void write_checkpoint_file(const std::string& path, const std::string& payload) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(dir, ec);
  MOE_CHECK(!ec, "checkpoint: cannot create folder ", dir.string(), ": ", ec.message());
  std::string header(kMagic, sizeof(kMagic));
  put_u64(header, payload.size());
  put_u64(header, fnv1a64(payload));
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MOE_CHECK(fd >= 0, "checkpoint: cannot create ", tmp, ": ", std::strerror(errno));
  try {
    write_all(fd, header.data(), header.size(), tmp);
    const size_t half = payload.size() / 2;
    write_all(fd, payload.data(), half, tmp);
    if (write_hook()) write_hook()(path);
    write_all(fd, payload.data() + half, payload.size() - half, tmp);
    MOE_CHECK(::fsync(fd) == 0, "checkpoint: fsync of ", tmp, " failed: ", std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  MOE_CHECK(::close(fd) == 0, "checkpoint: closing ", tmp, " failed: ", std::strerror(errno));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    MOE_THROW("checkpoint: renaming ", tmp, " to ", path, " failed: ", why);
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::string read_checkpoint_file(const std::string& path) {
  std::error_code ec;
  MOE_CHECK(!std::filesystem::is_directory(path, ec), "checkpoint: ", path, " is a folder, not a checkpoint file");
  std::ifstream in(path, std::ios::binary);
  MOE_CHECK(in.good(), "checkpoint: cannot open ", path, std::filesystem::exists(path, ec) ? "" : " (no such file)");
  std::ostringstream buf;
  buf << in.rdbuf();
  const std::string bytes = buf.str();
  const bool v2 = bytes.size() >= kHeader && std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) == 0;
  const bool v1 = bytes.size() >= kHeader && std::memcmp(bytes.data(), kMagicV1, sizeof(kMagicV1)) == 0;
  MOE_CHECK(v1 || v2, "checkpoint: ", path, " is not a moe checkpoint (bad or missing header; ", bytes.size(),
            " bytes)");
  const uint64_t size = get_u64(bytes, 8), hash = get_u64(bytes, 16);
  MOE_CHECK(bytes.size() - kHeader == size, "checkpoint: ", path, " is truncated or padded: header says ", size,
            " payload bytes, the file holds ", bytes.size() - kHeader);
  std::string payload = bytes.substr(kHeader);
  const uint64_t actual = fnv1a64(v2 ? kFnv1a64Offset : kFnv1a64OffsetBefore202612, payload.data(), payload.size());
  MOE_CHECK(actual == hash, "checkpoint: ", path, " is corrupted (checksum mismatch); not loading it");
  return payload;
}

std::string step_checkpoint_path(const std::string& dir, int64_t step) {
  return (std::filesystem::path(dir) / ("checkpoint-" + std::to_string(step) + ".moeckpt")).string();
}

std::vector<std::pair<int64_t, std::string>> list_step_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const std::string prefix = "checkpoint-", suffix = ".moeckpt";
    if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    out.emplace_back(std::stoll(digits), entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace moe
