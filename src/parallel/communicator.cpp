// The local backend, option checks and the backend factory (see moe/parallel/communicator.h).
#include "moe/parallel/communicator.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>

#include "moe/core/build_config.h"
#include "moe/core/error.h"
#include "parallel/backends.h"

namespace moe {
namespace {

class LocalWork : public CommWork {
 public:
  void wait() override {}
};

// World size 1: every collective is the identity.
class LocalCommunicator : public Communicator {
 public:
  explicit LocalCommunicator(std::string name) { name_ = std::move(name); }
  std::string backend() const override { return "local"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_to_all_single(at::Tensor& output, const at::Tensor& input, const std::vector<int64_t>& output_splits,
                         const std::vector<int64_t>& input_splits) override {
    detail::check_all_to_all(output, input, output_splits, input_splits, 1, "local communicator '" + name_ + "'");
    if (input.numel() > 0) output.copy_(input);
  }
  void all_reduce(at::Tensor& /*tensor*/, ReduceOp /*op*/) override {}
  std::unique_ptr<CommWork> all_reduce_async(at::Tensor& /*tensor*/) override { return std::make_unique<LocalWork>(); }
  at::Tensor all_gather(const at::Tensor& input) override { return input.unsqueeze(0).clone(); }
  void broadcast(at::Tensor& /*tensor*/, int root) override {
    MOE_CHECK(root == 0, "local communicator '", name_, "': broadcast root must be 0, got ", root);
  }
  void barrier() override {}
  std::shared_ptr<Communicator> subgroup(const std::vector<int>& ranks, const std::string& name) override {
    MOE_CHECK(ranks == std::vector<int>{0}, "local communicator '", name_, "': a subgroup must be {0}");
    return std::make_shared<LocalCommunicator>(name);
  }
};

}  // namespace

namespace detail {

void check_all_to_all(const at::Tensor& output, const at::Tensor& input, const std::vector<int64_t>& output_splits,
                      const std::vector<int64_t>& input_splits, int size, const std::string& who) {
  MOE_CHECK(static_cast<int>(output_splits.size()) == size && static_cast<int>(input_splits.size()) == size, who,
            ": all_to_all_single needs one split per rank (", size, "), got ", output_splits.size(), " output and ",
            input_splits.size(), " input splits");
  int64_t in_rows = 0, out_rows = 0;
  for (int q = 0; q < size; ++q) {
    MOE_CHECK(output_splits[q] >= 0 && input_splits[q] >= 0, who, ": split sizes must be >= 0, got output ",
              output_splits[q], " and input ", input_splits[q], " for rank ", q);
    in_rows += input_splits[q];
    out_rows += output_splits[q];
  }
  MOE_CHECK(input.defined() && input.dim() >= 1 && input.size(0) == in_rows && input.is_contiguous(), who,
            ": input must be contiguous with ", in_rows, " rows (the input splits' sum), got ",
            input.defined() ? input.sizes() : at::IntArrayRef{});
  MOE_CHECK(output.defined() && output.dim() == input.dim() && output.size(0) == out_rows && output.is_contiguous() &&
                output.scalar_type() == input.scalar_type() && output.sizes().slice(1) == input.sizes().slice(1),
            who, ": output must be contiguous ", input.scalar_type(), " with ", out_rows,
            " rows (the output splits' sum) and the input's row shape, got ",
            output.defined() ? output.sizes() : at::IntArrayRef{});
}

#if !MOE_WITH_GLOO
std::shared_ptr<Communicator> make_gloo_communicator(const CommunicatorOptions&, const DistributedEnv&) {
  MOE_THROW("communicator backend 'gloo': moe was built without Gloo (install libgloo-dev and reconfigure)");
}
#endif
#if !MOE_WITH_NCCL
std::shared_ptr<Communicator> make_nccl_communicator(const CommunicatorOptions&, const DistributedEnv&) {
  MOE_THROW("communicator backend 'nccl': moe was built without CUDA support (the nccl backend needs the CUDA tier)");
}
#endif

}  // namespace detail

void CommunicatorOptions::validate(const std::string& owner) const {
  MOE_CHECK(backend == "local" || backend == "gloo" || backend == "nccl", owner,
            ".backend must be one of local, gloo, nccl; got '", backend, "'");
  MOE_CHECK(std::isfinite(timeout_s) && timeout_s > 0, owner, ".timeout_s must be > 0, got ", timeout_s);
}

std::vector<std::string> available_backends() {
  std::vector<std::string> out{"local"};
  if (MOE_WITH_GLOO) out.push_back("gloo");
  if (MOE_WITH_NCCL) out.push_back("nccl");
  return out;
}

std::shared_ptr<Communicator> make_local_communicator() { return std::make_shared<LocalCommunicator>("world"); }

std::shared_ptr<Communicator> make_communicator(const CommunicatorOptions& options, const DistributedEnv& env) {
  options.validate();
  if (options.backend == "local") {
    MOE_CHECK(env.world_size == 1, "communicator backend 'local' runs one process, but the environment (", env.source,
              ") says WORLD_SIZE=", env.world_size, "; choose gloo or nccl");
    return make_local_communicator();
  }
  if (options.backend == "gloo") return detail::make_gloo_communicator(options, env);
  return detail::make_nccl_communicator(options, env);
}

}  // namespace moe
