// Sharded, reshardable checkpoints (see moe/train/sharded_state.h).
#include "moe/train/sharded_state.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <cstring>
#include <iterator>
#include <sstream>

#include "moe/core/error.h"
#include "moe/train/checkpoint_file.h"

namespace moe {
namespace {

// Archive keys must be identifiers: entries are stored as "t<i>" with their names in one list.
void write_state_file(const std::string& path, const NamedState& state, const NamedState& meta) {
  torch::serialize::OutputArchive archive;
  std::string names;
  int64_t i = 0;
  for (const auto& [name, tensor] : state) {
    names += name + "\n";
    auto t = tensor.detach().cpu().contiguous();
    // A slice of a larger storage (an expert's parameter inside its bank's stack) is written on its
    // own: the archive stores whole storages.
    if (t.storage().nbytes() != static_cast<size_t>(t.nbytes())) t = t.clone();
    archive.write("t" + std::to_string(i++), t);
  }
  archive.write("names", string_tensor(names));
  for (const auto& [key, tensor] : meta) archive.write(key, tensor);
  std::string bytes;
  archive.save_to([&bytes](const void* data, size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  write_checkpoint_file(path, bytes);
}

NamedState read_state_file(const std::string& path, torch::serialize::InputArchive& archive) {
  const auto payload = read_checkpoint_file(path);
  archive.load_from(payload.data(), payload.size(), at::kCPU);
  at::Tensor names_t;
  MOE_CHECK(archive.try_read("names", names_t), "sharded checkpoint ", path, " has no entry list");
  NamedState out;
  std::istringstream names(tensor_string(names_t));
  int64_t i = 0;
  for (std::string name; std::getline(names, name); ++i) {
    at::Tensor t;
    MOE_CHECK(archive.try_read("t" + std::to_string(i), t), "sharded checkpoint ", path, " lacks entry ", name);
    out[name] = t;
  }
  return out;
}

}  // namespace

at::Tensor string_tensor(const std::string& text) {
  auto t = at::empty({static_cast<int64_t>(text.size())}, at::kByte);
  if (!text.empty()) std::memcpy(t.data_ptr<uint8_t>(), text.data(), text.size());
  return t;
}

std::string tensor_string(const at::Tensor& bytes) {
  auto c = bytes.contiguous().cpu();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()));
}

NamedState module_state(const torch::nn::Module& module) {
  NamedState out;
  for (const auto& p : module.named_parameters()) out[p.key()] = p.value().detach();
  for (const auto& b : module.named_buffers()) out[b.key()] = b.value().detach();
  return out;
}

void load_module_state(torch::nn::Module& module, const NamedState& state, const std::string& source) {
  torch::NoGradGuard no_grad;
  auto assign = [&](const std::string& name, at::Tensor target) {
    auto it = state.find(name);
    MOE_CHECK(it != state.end(), source, " has no entry '", name, "' (the model's configuration differs?)");
    MOE_CHECK(it->second.sizes() == target.sizes(), source, ": entry '", name, "' has shape ", it->second.sizes(),
              " but the model expects ", target.sizes());
    target.copy_(it->second);
  };
  for (auto& p : module.named_parameters()) assign(p.key(), p.value());
  for (auto& b : module.named_buffers()) assign(b.key(), b.value());
}

std::string shared_state_path(const std::string& prefix) { return prefix + ".moeckpt"; }

std::string expert_shard_path(const std::string& prefix, int position, int P) {
  return prefix + ".experts-" + std::to_string(position) + "-of-" + std::to_string(P) + ".moeckpt";
}

void save_sharded_state(const std::string& prefix, const NamedState& state, const ParallelGroups& groups,
                        const std::string& tag) {
  const int P = groups.expert_parallel_size();
  const int position = groups.expert ? groups.expert->rank() : 0;
  const auto tag_tensor = string_tensor(tag);
  if (P == 1) {
    // Every process holds every expert: one file, written by world rank 0, experts inline.
    if (!groups.world || groups.world->rank() == 0)
      write_state_file(shared_state_path(prefix), state,
                       {{"expert_parallel_size", at::tensor(int64_t{1})},
                        {"experts_inline", at::tensor(int64_t{1})},
                        {"tag", tag_tensor}});
    if (groups.world) groups.world->barrier();
    return;
  }
  NamedState shared, experts;
  for (const auto& [name, t] : state) (expert_id_of(name) < 0 ? shared : experts)[name] = t;
  if (!groups.expert_data || groups.expert_data->rank() == 0)
    write_state_file(expert_shard_path(prefix, position, P), experts, {{"tag", tag_tensor}});
  // The shared file last, once every shard is complete: a listed checkpoint is a whole one.
  if (groups.world) groups.world->barrier();
  if (!groups.world || groups.world->rank() == 0)
    write_state_file(shared_state_path(prefix), shared,
                     {{"expert_parallel_size", at::tensor(int64_t{P})}, {"tag", tag_tensor}});
  if (groups.world) groups.world->barrier();
}

NamedState load_sharded_state(const std::string& prefix, const std::function<bool(int64_t)>& wanted) {
  torch::serialize::InputArchive archive;
  auto out = read_state_file(shared_state_path(prefix), archive);
  at::Tensor p_t, tag_t;
  MOE_CHECK(archive.try_read("expert_parallel_size", p_t) && archive.try_read("tag", tag_t), "sharded checkpoint ",
            shared_state_path(prefix), " does not say how many expert shards it has");
  const auto tag = tensor_string(tag_t);
  const int P = static_cast<int>(p_t.item<int64_t>());
  at::Tensor inline_t;
  if (archive.try_read("experts_inline", inline_t)) {  // one file holds everything
    for (auto it = out.begin(); it != out.end();) {
      const auto id = expert_id_of(it->first);
      it = id >= 0 && !wanted(id) ? out.erase(it) : std::next(it);
    }
    return out;
  }
  for (int i = 0; i < P; ++i) {
    torch::serialize::InputArchive shard_archive;
    const auto path = expert_shard_path(prefix, i, P);
    auto entries = read_state_file(path, shard_archive);
    at::Tensor shard_tag;
    MOE_CHECK(shard_archive.try_read("tag", shard_tag) && tensor_string(shard_tag) == tag, "sharded checkpoint ", path,
              " belongs to another save than ", shared_state_path(prefix), " (tag '",
              shard_tag.defined() ? tensor_string(shard_tag) : std::string(), "', expected '", tag, "')");
    for (auto& [name, t] : entries)
      if (wanted(expert_id_of(name))) out[name] = t;
  }
  return out;
}

}  // namespace moe
