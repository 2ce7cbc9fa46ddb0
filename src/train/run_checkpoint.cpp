// The checkpoint of a translation run (see moe/train/run_checkpoint.h).
#include "moe/train/run_checkpoint.h"

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>
#include <torch/serialize/archive.h>

#include <filesystem>

#include "moe/core/error.h"
#include "moe/core/option_fields.h"
#include "moe/layers/expert_parallel.h"
#include "moe/train/checkpoint_file.h"
#include "moe/train/optimizer.h"
#include "moe/train/random_state.h"

namespace moe {
namespace fs = std::filesystem;
namespace {

at::Tensor entry(const NamedState& state, const std::string& key, const std::string& path) {
  auto it = state.find(key);
  MOE_CHECK(it != state.end(), "checkpoint ", path, " has no '", key, "' entry");
  return it->second;
}

// "<dir>/checkpoint-<step>.moeckpt" -> "<dir>/checkpoint-<step>" (the shards' prefix).
std::string checkpoint_prefix(const std::string& path) {
  const std::string suffix = ".moeckpt";
  MOE_CHECK(path.size() > suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0,
            "checkpoint ", printable(path), " must end in .moeckpt");
  return path.substr(0, path.size() - suffix.size());
}

// Removes expert shards beside `path` that the save just written there does not own: those of
// another expert-parallel size, or all of them after a save with the experts inline (P = 1).
void remove_stale_shards(const std::string& path, int keep_parallel_size) {
  const auto prefix = fs::path(checkpoint_prefix(path)).filename().string() + ".experts-";
  const auto keep = "-of-" + std::to_string(keep_parallel_size) + ".moeckpt";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path(), ec)) {
    const auto name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    if (keep_parallel_size > 1 && name.size() > keep.size() &&
        name.compare(name.size() - keep.size(), keep.size(), keep) == 0)
      continue;
    fs::remove(e.path(), ec);
  }
}

// A checkpoint written by one process before format 2: one LibTorch archive holding the model's and
// the optimizer's own archives. Converted to named state by loading both into a model and an
// optimizer built from its configuration.
OpenedCheckpoint convert_single_process_format1(torch::serialize::InputArchive& archive, const std::string& path) {
  auto read = [&](const char* key) {
    at::Tensor t;
    MOE_CHECK(archive.try_read(key, t), "checkpoint ", path, " has no '", key, "' entry");
    return t;
  };
  const auto format = read("format").item<int64_t>();
  MOE_CHECK(format == 1, "checkpoint ", path, " has format ", format, "; this build reads formats 1 and ",
            kRunCheckpointFormat);
  OpenedCheckpoint out;
  out.format = 1;
  apply_format1_toml(out.config, tensor_string(read("config")), "the config stored in " + path);
  out.tokenizer = SentencePieceTokenizer::from_serialized(tensor_string(read("tokenizer")));
  out.step = read("step").item<int64_t>();
  TransformerModel model(nullptr);
  {
    ScopedSeed keep(0, at::kCPU);  // building a model draws initial values: leave the run's streams alone
    model = TransformerModel(model_options_for(out.config, out.tokenizer));
  }
  torch::serialize::InputArchive model_archive, optimizer_archive;
  MOE_CHECK(archive.try_read("model", model_archive) && archive.try_read("optimizer", optimizer_archive), "checkpoint ",
            path, " lacks the model or optimizer state");
  model->load(model_archive);
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
  Optimizer optimizer(named, out.config.train);
  optimizer.adamw().load(optimizer_archive);
  out.state = module_state(*model);
  for (auto& [k, v] : optimizer.state()) out.state[k] = v;
  out.state["trainer.format"] = at::tensor(int64_t{1});
  out.state["trainer.step"] = read("step");
  out.state["trainer.batcher"] = read("batcher");
  out.state["trainer.best_valid"] = read("best_valid");
  out.state["trainer.elapsed_s"] = read("elapsed_s");
  out.state["trainer.rng_cpu"] = read("rng_cpu").unsqueeze(0);  // one process: [1, bytes]
  at::Tensor cuda;
  if (archive.try_read("rng_cuda", cuda)) out.state["trainer.rng_cuda"] = cuda.unsqueeze(0);
  return out;
}

}  // namespace

at::Device parse_run_device(const std::string& name, const std::string& key) {
  const bool index_ok = name.size() > 5 && name.size() <= 8 && name.compare(0, 5, "cuda:") == 0 &&
                        name.find_first_not_of("0123456789", 5) == std::string::npos;
  MOE_CHECK(name == "cpu" || name == "cuda" || index_ok, key, " must be cpu, cuda or cuda:N, got '", printable(name),
            "'");
  at::Device device(name);
  MOE_CHECK(!device.is_cuda() || at::hasCUDA(), key, " = ", name,
            ": this LibTorch has no usable CUDA (moe was built without CUDA support or no GPU is visible)");
  return device;
}

TransformerOptions model_options_for(const RunConfig& config, const SentencePieceTokenizer& tokenizer) {
  auto options = config.model;
  options.vocab_size = tokenizer.vocab_size();
  options.padding_idx = SentencePieceTokenizer::kPad;
  return options;
}

OpenedCheckpoint open_run_checkpoint(const std::string& path, const std::function<bool(int64_t)>& wanted) {
  MOE_CHECK(!fs::is_directory(path), "checkpoint ", printable(path), " is a folder, not a checkpoint file");
  const auto payload = read_checkpoint_file(path);
  torch::serialize::InputArchive archive;
  archive.load_from(payload.data(), payload.size(), at::kCPU);
  at::Tensor names;
  if (!archive.try_read("names", names)) return convert_single_process_format1(archive, path);
  OpenedCheckpoint out;
  out.state = load_sharded_state(checkpoint_prefix(path), wanted);
  out.format = entry(out.state, "trainer.format", path).item<int64_t>();
  MOE_CHECK(out.format == 1 || out.format == kRunCheckpointFormat, "checkpoint ", path, " has format ", out.format,
            "; this build reads formats 1 and ", kRunCheckpointFormat);
  const auto config = tensor_string(entry(out.state, "trainer.config", path));
  if (out.format == 1) {
    apply_format1_toml(out.config, config, "the config stored in " + path);
  } else {
    apply_toml(out.config, config, "the config stored in " + path);
  }
  out.tokenizer = SentencePieceTokenizer::from_serialized(tensor_string(entry(out.state, "trainer.tokenizer", path)));
  out.step = entry(out.state, "trainer.step", path).item<int64_t>();
  out.writer_world_size = entry(out.state, "trainer.rng_cpu", path).size(0);
  return out;
}

void save_run_checkpoint(const std::string& run_dir, int64_t step, const NamedState& state,
                         const ParallelGroups& groups, bool best, int64_t keep_last) {
  const int P = groups.expert_parallel_size();
  const bool writer = !groups.world || groups.world->rank() == 0;
  const auto tag = "step " + std::to_string(step);
  std::vector<std::string> written{step_checkpoint_path(run_dir, step)};
  if (best) written.push_back((fs::path(run_dir) / "best.moeckpt").string());
  for (const auto& path : written) {
    save_sharded_state(checkpoint_prefix(path), state, groups, tag);
    if (writer) remove_stale_shards(path, P);
  }
  if (writer) {
    auto list = list_step_checkpoints(run_dir);
    while (static_cast<int64_t>(list.size()) > keep_last) {
      remove_run_checkpoint(list.front().second);
      list.erase(list.begin());
    }
  }
  if (groups.world) groups.world->barrier();
}

void remove_run_checkpoint(const std::string& path) {
  remove_stale_shards(path, 0);
  std::error_code ec;
  fs::remove(path, ec);
}

LoadedModel load_model_checkpoint(const std::string& path, const std::string& device) {
  const auto dev = parse_run_device(device, "--device");
  auto opened = open_run_checkpoint(path);
  LoadedModel out;
  out.config = opened.config;
  out.tokenizer = opened.tokenizer;
  out.step = opened.step;
  out.model = TransformerModel(model_options_for(out.config, out.tokenizer));  // every expert here
  load_module_state(*out.model, opened.state, path);
  out.model->to(dev);
  out.model->eval();
  return out;
}

TransformerModel gather_experts(TransformerModel& model, const ParallelGroups& groups,
                                const TransformerOptions& options, int64_t num_experts) {
  const int P = groups.expert_parallel_size();
  if (P == 1) return model;  // every expert is here already
  NamedState state = module_state(*model);
  const auto shard = expert_shard(num_experts, groups.expert.get(), "parallel.expert_parallel_size");
  for (const auto& p : model->named_parameters()) {
    const int64_t id = expert_id_of(p.key());
    if (id < 0) continue;
    auto all = groups.expert->all_gather(p.value().detach().contiguous());  // [P, ...]
    for (int q = 0; q < P; ++q) state[with_expert_id(p.key(), q * shard.count + (id - shard.first))] = all[q];
  }
  if (groups.world && groups.world->rank() != 0) return model;
  const auto device = model->parameters().front().device();
  TransformerModel full(nullptr);
  {
    ScopedSeed keep(0, device);  // building a model draws initial values: leave the run's streams alone
    full = TransformerModel(options);
  }
  full->to(device);
  load_module_state(*full, state, "the gathered experts");
  full->eval();
  return full;
}

}  // namespace moe
