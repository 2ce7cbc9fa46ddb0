// Process groups and the start-up consistency check (see moe/parallel/process_groups.h).
#include "moe/parallel/process_groups.h"

#include <ATen/ATen.h>

#include <cctype>
#include <cstring>
#include <sstream>
#include <vector>

#include "moe/core/error.h"
#include "moe/core/hash.h"

namespace moe {

ParallelGroups make_parallel_groups(const std::shared_ptr<Communicator>& world, int P, const std::string& owner) {
  MOE_CHECK(world != nullptr, "make_parallel_groups: the world communicator is null");
  const int W = world->size(), r = world->rank();
  MOE_CHECK(P >= 1 && W % P == 0, owner, " = ", P, " must be >= 1 and divide the world size ", W);
  ParallelGroups g;
  g.world = world;
  std::vector<int> expert_ranks, data_ranks;
  const int group = r / P, position = r % P;
  for (int i = 0; i < P; ++i) expert_ranks.push_back(group * P + i);
  for (int j = 0; j < W / P; ++j) data_ranks.push_back(j * P + position);
  g.expert = world->subgroup(expert_ranks, "expert" + std::to_string(group));
  g.expert_data = world->subgroup(data_ranks, "expert_data" + std::to_string(position));
  return g;
}

int64_t expert_id_of(const std::string& name) {
  const std::string key = "experts.";
  for (size_t pos = name.find(key); pos != std::string::npos; pos = name.find(key, pos + 1)) {
    if (pos != 0 && name[pos - 1] != '.') continue;
    size_t i = pos + key.size(), j = i;
    while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) ++j;
    if (j > i && j < name.size() && name[j] == '.') return std::stoll(name.substr(i, j - i));
  }
  return -1;
}

std::string with_expert_id(const std::string& name, int64_t id) {
  const std::string key = "experts.";
  for (size_t pos = name.find(key); pos != std::string::npos; pos = name.find(key, pos + 1)) {
    if (pos != 0 && name[pos - 1] != '.') continue;
    size_t i = pos + key.size(), j = i;
    while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) ++j;
    if (j > i && j < name.size() && name[j] == '.') return name.substr(0, i) + std::to_string(id) + name.substr(j);
  }
  MOE_THROW("with_expert_id: '", name, "' has no experts.<id>. segment");
}

void check_same_on_all_ranks(Communicator& world, const std::string& text, const std::string& what) {
  if (world.size() == 1) return;
  auto mine = at::tensor({static_cast<int64_t>(fnv1a64(text) >> 1), static_cast<int64_t>(text.size())}, at::kLong);
  auto all = world.all_gather(mine);  // [W, 2]
  const int64_t* a = all.data_ptr<int64_t>();
  int differing = -1;
  int64_t longest = 0;
  for (int q = 0; q < world.size(); ++q) {
    longest = std::max(longest, a[2 * q + 1]);
    if (differing < 0 && (a[2 * q] != a[0] || a[2 * q + 1] != a[1])) differing = q;
  }
  if (differing < 0) return;
  // Exchange the texts to say where they differ (only on this error path).
  auto bytes = at::zeros({longest}, at::kByte);
  if (!text.empty()) std::memcpy(bytes.data_ptr<uint8_t>(), text.data(), text.size());
  auto texts = world.all_gather(bytes);
  auto text_of = [&](int q) {
    return std::string(reinterpret_cast<const char*>(texts[q].data_ptr<uint8_t>()), static_cast<size_t>(a[2 * q + 1]));
  };
  std::istringstream first(text_of(0)), other(text_of(differing));
  std::string l0, l1;
  int line = 0;
  while (true) {
    const bool g0 = static_cast<bool>(std::getline(first, l0)), g1 = static_cast<bool>(std::getline(other, l1));
    ++line;
    if (!g0) l0 = "<end>";
    if (!g1) l1 = "<end>";
    if (l0 != l1 || (!g0 && !g1)) break;
  }
  MOE_THROW(what, " differs between ranks: rank ", differing, " has '", l1, "' where rank 0 has '", l0, "' (line ",
            line, "); every rank must start with the same ", what);
}

}  // namespace moe
