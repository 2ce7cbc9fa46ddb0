// The checkpoint of a translation run (see moe/train/run_checkpoint.h).
#include "moe/train/run_checkpoint.h"

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>
#include <torch/serialize/archive.h>

#include <ctime>
#include <filesystem>
#include <sstream>

#include "moe/core/error.h"
#include "moe/core/logging.h"
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
  // Format 1 stored LibTorch's torch::optim::AdamW archive: load it into one and take its moments by
  // parameter name (the names the fused optimizer's state uses).
  std::vector<at::Tensor> params;
  for (const auto& [name, p] : named) params.push_back(p);
  torch::optim::AdamW adamw(params, torch::optim::AdamWOptions(out.config.train.lr));
  adamw.load(optimizer_archive);
  out.state = module_state(*model);
  for (const auto& [name, p] : named) {
    auto it = adamw.state().find(p.unsafeGetTensorImpl());
    if (it == adamw.state().end()) continue;
    auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
    out.state["optimizer." + name + ".exp_avg"] = st.exp_avg();
    out.state["optimizer." + name + ".exp_avg_sq"] = st.exp_avg_sq();
    out.state["optimizer." + name + ".step"] = at::tensor(st.step(), at::kLong);
  }
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
  auto rng = out.state.find("trainer.rng_cpu");  // absent from an average of checkpoints
  out.writer_world_size = rng != out.state.end() ? rng->second.size(0) : 0;
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

int64_t read_checkpoint_step(const std::string& path) {
  const auto payload = read_checkpoint_file(path);
  torch::serialize::InputArchive archive;
  archive.load_from(payload.data(), payload.size(), at::kCPU);
  at::Tensor names, t;
  if (!archive.try_read("names", names)) {  // format 1, one process
    MOE_CHECK(archive.try_read("step", t), "checkpoint ", path, " has no step");
    return t.item<int64_t>();
  }
  std::istringstream lines(tensor_string(names));
  int64_t i = 0;
  for (std::string name; std::getline(lines, name); ++i)
    if (name == "trainer.step" && archive.try_read("t" + std::to_string(i), t)) return t.item<int64_t>();
  MOE_THROW("checkpoint ", path, " has no 'trainer.step' entry");
}

std::string set_aside_later_checkpoints(const std::string& run_dir, int64_t step, bool discard) {
  std::vector<std::pair<int64_t, std::string>> later;
  for (const auto& [s, path] : list_step_checkpoints(run_dir))
    if (s > step) later.emplace_back(s, path);
  if (later.empty()) return "";
  if (discard) {
    for (const auto& [s, path] : later) {
      log_warn(detail::concat("[resume] deleting ", path, " (after the resumed step ", step, "; --discard-later)"));
      remove_run_checkpoint(path);
    }
    return "";
  }
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", std::localtime(&now));
  fs::path dir = fs::path(run_dir) / (std::string("set-aside-") + stamp);
  for (int n = 2; fs::exists(dir); ++n)
    dir = fs::path(run_dir) / (std::string("set-aside-") + stamp + "-" + std::to_string(n));
  fs::create_directories(dir);
  for (const auto& [s, path] : later) {
    const auto prefix = fs::path(checkpoint_prefix(path)).filename().string();
    for (const auto& e : fs::directory_iterator(run_dir)) {
      const auto name = e.path().filename().string();
      if (name == prefix + ".moeckpt" || name.rfind(prefix + ".experts-", 0) == 0) fs::rename(e.path(), dir / name);
    }
  }
  log_warn(detail::concat("[resume] ", later.size(), " checkpoint(s) after the resumed step ", step, " (up to step ",
                          later.back().first, ") moved to ", dir.string(), " (--discard-later deletes them instead)"));
  return dir.string();
}

void repair_best_checkpoint(const std::string& run_dir, int64_t best_step, const std::string& set_aside_dir) {
  if (best_step < 0) return;
  const auto best = (fs::path(run_dir) / "best.moeckpt").string();
  int64_t held = -1;
  std::string why;
  try {
    held = fs::exists(best) ? read_checkpoint_step(best) : -1;
  } catch (const Error& e) {
    why = e.what();
  }
  if (held == best_step) return;
  const auto source = step_checkpoint_path(run_dir, best_step);
  const auto what = held >= 0     ? "holds step " + std::to_string(held)
                    : why.empty() ? std::string("is missing")
                                  : "is unreadable (" + why + ")";
  if (!fs::exists(source)) {
    log_warn(detail::concat("[resume] best.moeckpt ", what, " but the best validation recorded is at step ", best_step,
                            ", whose checkpoint is gone; best.moeckpt is left as it is"));
    return;
  }
  if (!set_aside_dir.empty() && fs::exists(best)) {
    for (const auto& e : fs::directory_iterator(run_dir)) {
      const auto name = e.path().filename().string();
      if (name == "best.moeckpt" || name.rfind("best.experts-", 0) == 0)
        fs::copy_file(e.path(), fs::path(set_aside_dir) / name);
    }
  }
  // Copy the step checkpoint's files over best's (each to a temporary, then renamed), then drop shards
  // of another layout.
  const auto from = fs::path(checkpoint_prefix(source)).filename().string();
  int shards = 0;
  for (const auto& e : fs::directory_iterator(run_dir)) {
    const auto name = e.path().filename().string();
    if (name != from + ".moeckpt" && name.rfind(from + ".experts-", 0) != 0) continue;
    const auto target = fs::path(run_dir) / ("best" + name.substr(from.size()));
    const auto tmp = target.string() + ".tmp.repair";
    fs::copy_file(e.path(), tmp, fs::copy_options::overwrite_existing);
    fs::rename(tmp, target);
    shards += name.find(".experts-") != std::string::npos;
  }
  remove_stale_shards(best, shards);
  log_warn(detail::concat("[resume] best.moeckpt ", what, " but the best validation recorded is at step ", best_step,
                          ": restored it from ", source));
}

void remove_run_checkpoint(const std::string& path) {
  remove_stale_shards(path, 0);
  std::error_code ec;
  fs::remove(path, ec);
}

LoadedModel load_model_checkpoint(const std::string& path, const std::string& device) {
  const auto dev = parse_run_device(device, "--device");
  auto opened = open_run_checkpoint(path);
  load_run_plugins(opened.config, "checkpoint " + path);
  LoadedModel out;
  out.config = opened.config;
  out.tokenizer = opened.tokenizer;
  out.step = opened.step;
  out.model = TransformerModel(model_options_for(out.config, out.tokenizer));  // every expert here
  load_module_state(*out.model, opened.state, path);
  for (const auto& p : out.model->named_parameters()) {
    const auto bad = (~at::isfinite(p.value())).sum().item<int64_t>();
    MOE_CHECK(bad == 0, "checkpoint ", path, " holds non-finite parameters (", bad, " of ", p.value().numel(),
              " values of '", p.key(), "' are NaN or infinite); it cannot translate");
  }
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
