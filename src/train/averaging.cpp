// Checkpoint averaging (see moe/train/averaging.h).
#include "moe/train/averaging.h"

#include <ATen/ATen.h>

#include <filesystem>

#include "moe/core/error.h"
#include "moe/core/logging.h"
#include "moe/train/checkpoint_file.h"
#include "moe/train/run_checkpoint.h"

namespace moe {

std::vector<std::string> last_step_checkpoints(const std::string& run_dir, int64_t n) {
  MOE_CHECK(n >= 1 && n <= 1000, "the number of checkpoints to average must be in [1, 1000], got ", n);
  const auto list = list_step_checkpoints(run_dir);
  MOE_CHECK(static_cast<int64_t>(list.size()) >= n, run_dir, " holds ", list.size(), " step checkpoint(s), fewer than ",
            n, " (train.keep_last keeps that many)");
  std::vector<std::string> out;
  for (size_t i = list.size() - static_cast<size_t>(n); i < list.size(); ++i) out.push_back(list[i].second);
  return out;
}

void average_checkpoints(const std::vector<std::string>& inputs, const std::string& output) {
  MOE_CHECK(!inputs.empty(), "average_checkpoints: no checkpoint given");
  NamedState sum, last;
  std::string first_path;
  for (const auto& path : inputs) {
    auto opened = open_run_checkpoint(path);  // every expert, whatever the expert-parallel size
    NamedState model;
    for (auto& [name, t] : opened.state)
      if (name.rfind("trainer.", 0) != 0 && name.rfind("optimizer.", 0) != 0) model[name] = t;
    if (sum.empty()) {
      first_path = path;
      for (auto& [name, t] : model)
        sum[name] = at::isReducedFloatingType(t.scalar_type()) ? t.to(at::kFloat) : t.clone();
    } else {
      MOE_CHECK(model.size() == sum.size(), "average_checkpoints: ", path, " holds ", model.size(),
                " model entries but ", first_path, " holds ", sum.size(), " (not one model)");
      for (auto& [name, t] : model) {
        auto it = sum.find(name);
        MOE_CHECK(it != sum.end() && it->second.sizes() == t.sizes(), "average_checkpoints: entry '", name, "' of ",
                  path, it == sum.end() ? " is not in " + first_path : " has another shape than in " + first_path);
        it->second.add_(t.to(it->second.scalar_type()));
      }
    }
    last = std::move(opened.state);
  }
  const auto n = static_cast<int64_t>(inputs.size());
  NamedState out;
  for (auto& [name, t] : sum) {
    const auto dtype = last.at(name).scalar_type();
    out[name] = (t.is_floating_point() ? t.div(n) : t.div(n, "floor")).to(dtype);
  }
  for (auto& [name, t] : last)
    if (name.rfind("trainer.", 0) == 0) out[name] = t;
  std::string from;
  for (const auto& p : inputs) from += (from.empty() ? "" : "\n") + p;
  out["trainer.averaged_from"] = string_tensor(from);
  out.erase("trainer.rng_cpu");  // not a training state: nothing to resume
  out.erase("trainer.rng_cuda");
  const auto prefix = output.size() > 8 && output.compare(output.size() - 8, 8, ".moeckpt") == 0
                          ? output.substr(0, output.size() - 8)
                          : output;
  save_sharded_state(prefix, out, ParallelGroups{}, "averaged");
  log_info(detail::concat("[average] ", n, " checkpoint(s) -> ", prefix, ".moeckpt"));
}

}  // namespace moe
