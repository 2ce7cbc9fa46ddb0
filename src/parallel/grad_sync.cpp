// Bucketed gradient all-reduce and the sharded gradient norm (see moe/parallel/grad_sync.h).
#include "moe/parallel/grad_sync.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <cmath>
#include <memory>

#include "moe/core/error.h"

namespace moe {

GradientSynchronizer::GradientSynchronizer(const std::vector<std::pair<std::string, at::Tensor>>& named,
                                           ParallelGroups groups, double bucket_mb)
    : groups_(std::move(groups)) {
  MOE_CHECK(bucket_mb > 0, "GradientSynchronizer: bucket_mb must be > 0, got ", bucket_mb);
  MOE_CHECK(groups_.world != nullptr, "GradientSynchronizer: the world communicator is null");
  const auto limit = static_cast<int64_t>(bucket_mb * 1024 * 1024);
  Bucket open[2];  // [dense, expert]
  open[1].expert = true;
  for (auto it = named.rbegin(); it != named.rend(); ++it) {
    if (!it->second.requires_grad()) continue;
    const bool expert = expert_id_of(it->first) >= 0;
    (expert ? experts_ : dense_).push_back(it->second);
    auto& b = open[expert ? 1 : 0];
    if (!b.params.empty() && b.params.front().scalar_type() != it->second.scalar_type()) {
      buckets_.push_back(std::move(b));
      b = Bucket{};
      b.expert = expert;
    }
    b.params.push_back(it->second);
    b.numel += it->second.numel();
    if (b.numel * static_cast<int64_t>(it->second.element_size()) >= limit) {
      buckets_.push_back(std::move(b));
      b = Bucket{};
      b.expert = expert;
    }
  }
  for (auto& b : open)
    if (!b.params.empty()) buckets_.push_back(std::move(b));
  // The accumulators are kept alive here: a variable holds its accumulator weakly, and a new one
  // (without our hook) would replace it.
  for (size_t i = 0; i < buckets_.size(); ++i) {
    for (auto& p : buckets_[i].params) {
      auto accumulator = torch::autograd::impl::grad_accumulator(p);
      const auto key = accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
          [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
            on_accumulated(i);
            return outputs;
          }));
      hooks_.emplace_back(std::static_pointer_cast<void>(accumulator), key);
    }
  }
}

GradientSynchronizer::~GradientSynchronizer() {
  for (auto& [accumulator, key] : hooks_) static_cast<torch::autograd::Node*>(accumulator.get())->del_post_hook(key);
}

void GradientSynchronizer::arm() {
  const bool overlap = (!groups_.world || groups_.world->supports_overlap()) &&
                       (!groups_.expert_data || groups_.expert_data->supports_overlap());
  armed_ = overlap;
  next_to_start_ = 0;
  started_early_ = 0;
  for (auto& b : buckets_) {
    b.pending = static_cast<int64_t>(b.params.size());
    b.started = false;
  }
}

void GradientSynchronizer::on_accumulated(size_t bucket) {
  if (!armed_) return;
  if (--buckets_[bucket].pending > 0) return;
  // Start every complete bucket at the front of the order.
  while (next_to_start_ < buckets_.size() && buckets_[next_to_start_].pending <= 0) {
    start(next_to_start_++);
    ++started_early_;
  }
}

void GradientSynchronizer::start(size_t i) {
  auto& b = buckets_[i];
  b.started = true;
  auto& group = b.expert ? groups_.expert_data : groups_.world;
  if (!group || group->size() == 1) return;
  // Gradients, then one flag per parameter (1 where this rank has a gradient): a parameter that no
  // rank of the group touched keeps no gradient, so the optimizer skips it as one process would.
  std::vector<at::Tensor> pieces;
  std::vector<double> flags;
  for (auto& p : b.params) {
    auto g = p.grad();
    pieces.push_back(g.defined() ? g.detach().reshape({-1}) : at::zeros({p.numel()}, p.options()));
    flags.push_back(g.defined() ? 1.0 : 0.0);
  }
  pieces.push_back(at::tensor(flags, at::TensorOptions().dtype(at::kDouble)).to(b.params.front().options()));
  b.flat = at::cat(pieces);
  b.work = group->all_reduce_async(b.flat);
}

void GradientSynchronizer::synchronize() {
  armed_ = false;
  for (size_t i = 0; i < buckets_.size(); ++i)
    if (!buckets_[i].started) start(i);
  // Every bucket's has-gradient flags are read together: one device-to-host read per update (none
  // for one process, whose buckets start no reduction).
  std::vector<at::Tensor> flag_parts;
  for (auto& b : buckets_) {
    b.started = false;
    if (!b.work) continue;
    b.work->wait();
    b.work.reset();
    flag_parts.push_back(b.flat.narrow(0, b.numel, static_cast<int64_t>(b.params.size())).to(at::kDouble));
  }
  if (flag_parts.empty()) return;
  const auto flags = at::cat(flag_parts).cpu().contiguous();
  const double* has_grad = flags.data_ptr<double>();
  for (auto& b : buckets_) {
    if (!b.flat.defined()) continue;
    int64_t offset = 0;
    for (size_t j = 0; j < b.params.size(); ++j, ++has_grad) {
      auto& p = b.params[j];
      auto part = b.flat.narrow(0, offset, p.numel()).view(p.sizes());
      offset += p.numel();
      if (*has_grad == 0.0) continue;  // no rank of the group has a gradient for it
      if (p.grad().defined()) {
        p.mutable_grad().copy_(part);
      } else {
        p.mutable_grad() = part.clone();
      }
    }
    b.flat = at::Tensor();
  }
}

at::Tensor GradientSynchronizer::local_squares() const {
  auto device = at::Device(at::kCPU);
  for (const auto* list : {&dense_, &experts_})
    if (!list->empty()) device = list->front().device();
  // Per-gradient norms in float64 by one multi-tensor call (torch.nn.utils.clip_grad_norm_'s foreach
  // path: one kernel per dtype on CUDA where a loop over parameters launches ~8 per gradient).
  auto squares = [&](const std::vector<at::Tensor>& params) {
    std::vector<at::Tensor> grads;
    for (const auto& p : params)
      if (p.grad().defined()) grads.push_back(p.grad());  // no graph behind a gradient: no detach needed
    if (grads.empty()) return at::zeros({1}, at::TensorOptions().dtype(at::kDouble).device(device));
    return at::stack(at::_foreach_norm(grads, 2, at::kDouble)).pow(2).sum().reshape({1}).to(device);
  };
  return at::cat({squares(experts_), squares(dense_)});
}

double GradientSynchronizer::norm_from_squares(at::Tensor host_squares) const {
  MOE_CHECK(host_squares.is_cpu() && host_squares.scalar_type() == at::kDouble && host_squares.numel() == 2 &&
                host_squares.is_contiguous(),
            "GradientSynchronizer::norm_from_squares: expected local_squares() read to the host ([2] fp64 CPU), got ",
            host_squares.sizes(), " ", host_squares.scalar_type(), " on ", host_squares.device());
  auto expert = host_squares.narrow(0, 0, 1);
  if (groups_.expert && groups_.expert->size() > 1) groups_.expert->all_reduce(expert);
  const double* v = host_squares.data_ptr<double>();
  return std::sqrt(v[0] + v[1]);
}

double GradientSynchronizer::global_norm() const { return norm_from_squares(local_squares().cpu().contiguous()); }

double GradientSynchronizer::clip(double max_norm) {
  const double norm = global_norm();
  clip(max_norm, norm);
  return norm;
}

void GradientSynchronizer::clip(double max_norm, double norm) {
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return;
  std::vector<at::Tensor> grads;  // one multi-tensor call (a kernel per dtype on CUDA), not one per gradient
  for (auto* list : {&dense_, &experts_})
    for (auto& p : *list)
      if (p.grad().defined()) grads.push_back(p.mutable_grad());
  if (!grads.empty()) at::_foreach_mul_(grads, at::Scalar(coef));
}

}  // namespace moe
