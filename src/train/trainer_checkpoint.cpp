// The Trainer's checkpoints (see moe/train/trainer.h): opening the run folder, writing a step
// checkpoint with every piece of state a bit-exact resume needs (model, optimizer, data order, every
// rank's generators, best-model bookkeeping), and resuming from one at any world size. The file format
// itself is moe/train/run_checkpoint.h.
#include <ATen/ATen.h>

#include <filesystem>
#include <string>

#include "moe/core/error.h"
#include "moe/core/logging.h"
#include "moe/layers/expert_parallel.h"
#include "moe/train/checkpoint_file.h"
#include "moe/train/random_state.h"
#include "trainer_state.h"

namespace moe {
namespace fs = std::filesystem;

std::unique_ptr<OpenedCheckpoint> Trainer::open_run_folder(const std::string& resume_from, std::string& resume_path) {
  auto& s = *state_;
  std::unique_ptr<OpenedCheckpoint> resumed;
  if (!resume_from.empty()) {
    resume_path = resume_from;
    if (resume_from == "latest") {
      auto list = list_step_checkpoints(config_.run_dir);
      MOE_CHECK(!list.empty(), "--resume: no checkpoint-<step>.moeckpt in ", config_.run_dir);
      resume_path = list.back().second;
    }
    // This process's experts: its expert-parallel shard of every MoE layer.
    const auto shard =
        expert_shard(config_.model.moe.num_experts, s.groups.expert.get(), "parallel.expert_parallel_size");
    resumed = std::make_unique<OpenedCheckpoint>(open_run_checkpoint(
        resume_path, [shard](int64_t id) { return id >= shard.first && id < shard.first + shard.count; }));
    check_resume_compatible(config_, resumed->config, resume_path);
  } else {
    auto existing = list_step_checkpoints(config_.run_dir);
    MOE_CHECK(existing.empty(), "run_dir ", config_.run_dir, " already holds checkpoints (", existing.back().second,
              "); pass --resume to continue that run, or choose another run_dir");
  }
  // Temporary files of checkpoint writes that a crash interrupted are never valid; remove them.
  for (const auto& entry : fs::directory_iterator(config_.run_dir)) {
    if (!s.writer() || entry.path().filename().string().find(".moeckpt.tmp.") == std::string::npos) continue;
    log_warn(detail::concat("[checkpoint] removing ", entry.path().string(), " (left by an interrupted write)"));
    fs::remove(entry.path());
  }

  return resumed;
}

void Trainer::resume(const OpenedCheckpoint& checkpoint, const std::string& path) {
  auto& s = *state_;
  const auto& state = checkpoint.state;
  auto entry = [&](const std::string& key) {
    auto it = state.find(key);
    MOE_CHECK(it != state.end(), "checkpoint ", path, " has no '", key, "' entry");
    return it->second;
  };
  MOE_CHECK(state.count("trainer.averaged_from") == 0, "--resume: ", path, " is an average of checkpoints (",
            tensor_string(state.at("trainer.averaged_from")).substr(0, 200),
            ") for translation; resume from one of the step checkpoints instead");
  load_module_state(*model_, state, path);
  s.optimizer->load_state(state, path);
  step_ = checkpoint.step;
  s.batcher->restore(batcher_state_from_tensor(entry("trainer.batcher"), path));
  s.best_valid = entry("trainer.best_valid").item<double>();
  auto best_step = state.find("trainer.best_step");  // format 2
  s.best_step = best_step != state.end() ? best_step->second.item<int64_t>() : -1;
  auto stale = state.find("trainer.validations_without_improvement");
  s.validations_without_improvement = stale != state.end() ? stale->second.item<int64_t>() : 0;
  s.elapsed_before = entry("trainer.elapsed_s").item<double>();
  s.last_checkpoint_step = s.last_validation_step = step_;
  const int rank = s.world->rank(), world_size = s.world->size();
  if (checkpoint.writer_world_size == world_size) {
    auto cuda = state.find("trainer.rng_cuda");
    restore_random_state({entry("trainer.rng_cpu")[rank], cuda != state.end() ? cuda->second[rank] : at::Tensor()},
                         s.device);
  } else {
    // Another world size: the random streams cannot continue; start new ones per rank.
    seed_random_state(static_cast<uint64_t>(config_.train.seed) * 7919ULL + static_cast<uint64_t>(step_) * 104729ULL +
                          static_cast<uint64_t>(rank),
                      s.device);
    log_warn(detail::concat("[resume] ", path, " was written by ", checkpoint.writer_world_size, " process(es), this ",
                            "run has ", world_size,
                            ": random streams restart (dropout and sampled experts differ from "
                            "an uninterrupted run; parameters, optimizer and data order continue exactly)"));
  }
  // Step checkpoints after the resumed one belong to an abandoned continuation: they move aside (or
  // go, with discard_later), so that pruning and a later --resume see only this run's history.
  s.world->barrier();  // every rank has read its files before any is moved
  if (s.writer()) {
    set_aside_ = set_aside_later_checkpoints(config_.run_dir, step_, discard_later_);
    repair_best_checkpoint(config_.run_dir, s.best_step, set_aside_);
  }
  s.world->barrier();
  info("[resume] continuing from ", path, " at step ", step_);
}

void Trainer::save_checkpoint(bool best) {
  auto& s = *state_;
  // A non-finite model is never written (skipped updates keep it finite; this is the last guard).
  std::vector<at::Tensor> finite;
  for (const auto& p : model_->parameters()) finite.push_back(at::isfinite(p).all());
  if (!finite.empty() && !at::stack(finite).all().item<bool>()) {
    std::string name;
    for (const auto& p : model_->named_parameters())
      if (name.empty() && !at::isfinite(p.value()).all().item<bool>()) name = p.key();
    const auto list = list_step_checkpoints(config_.run_dir);
    MOE_THROW(
        "[checkpoint] step ", step_, ": the model has non-finite parameters ('", name, "'); not writing a checkpoint. ",
        list.empty() ? std::string("No checkpoint was written yet") : "The last good one is " + list.back().second);
  }
  NamedState state = module_state(*model_);
  for (auto& [k, v] : s.optimizer->state()) state[k] = v;
  const auto rng = capture_random_state(s.device);
  state["trainer.format"] = at::tensor(kRunCheckpointFormat, at::kLong);
  state["trainer.step"] = at::tensor(step_, at::kLong);
  state["trainer.config"] = string_tensor(config_.to_toml());
  state["trainer.tokenizer"] = string_tensor(data_.tokenizer.serialized());
  state["trainer.best_valid"] = at::tensor(s.best_valid, at::kDouble);
  state["trainer.best_step"] = at::tensor(s.best_step, at::kLong);
  state["trainer.validations_without_improvement"] = at::tensor(s.validations_without_improvement, at::kLong);
  state["trainer.elapsed_s"] = at::tensor(s.elapsed_before + s.session_seconds, at::kDouble);
  state["trainer.batcher"] = batcher_state_to_tensor(s.batcher->state());  // the same on every rank
  // Every rank's generators (dropout, sampled experts): [W, state bytes], restored per rank when the
  // world size is unchanged.
  state["trainer.rng_cpu"] = s.world->all_gather(rng.cpu);
  if (rng.cuda.defined()) state["trainer.rng_cuda"] = s.world->all_gather(rng.cuda);
  save_run_checkpoint(config_.run_dir, step_, state, s.groups, best, config_.train.keep_last);
  s.last_checkpoint_step = step_;
  const int P = s.groups.expert_parallel_size();
  info("[checkpoint] step ", step_, " -> ", step_checkpoint_path(config_.run_dir, step_),
       P > 1 ? detail::concat(" + ", P, " expert shards") : std::string(), best ? " (best so far)" : "");
}

}  // namespace moe
