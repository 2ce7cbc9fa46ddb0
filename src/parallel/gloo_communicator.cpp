// The gloo backend: LibTorch's c10d ProcessGroupGloo on CPU tensors, meeting through a c10d
// TCPStore (see moe/parallel/communicator.h). Compiled only when Gloo's headers were found at
// configure time (Debian's libgloo-dev; the implementation is the one inside libtorch_cpu, the
// headers only declare it). Sub-groups are further Gloo groups over prefixed views of the store.
#include "moe/core/build_config.h"

#if MOE_WITH_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1  // ProcessGroupGloo.hpp declares its class only under this switch
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <ATen/ATen.h>

#include <unistd.h>

#include <utility>

#include "moe/core/error.h"
#include "parallel/backends.h"

namespace moe::detail {
namespace {

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return c10d::ReduceOp(c10d::ReduceOp::SUM);
    case ReduceOp::kMin: return c10d::ReduceOp(c10d::ReduceOp::MIN);
    case ReduceOp::kMax: return c10d::ReduceOp(c10d::ReduceOp::MAX);
  }
  return c10d::ReduceOp(c10d::ReduceOp::SUM);
}

class GlooCommunicator;

class GlooWork : public CommWork {
 public:
  GlooWork(c10::intrusive_ptr<c10d::Work> work, const GlooCommunicator* owner, const char* op)
      : work_(std::move(work)), owner_(owner), op_(op) {}
  void wait() override;

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  const GlooCommunicator* owner_;
  const char* op_;
};

class GlooCommunicator : public Communicator {
 public:
  GlooCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size, std::string name,
                   std::chrono::milliseconds timeout, std::string host)
      : store_(std::move(store)), rank_(rank), size_(size), host_(std::move(host)) {
    name_ = std::move(name);
    timeout_ = timeout;
    guard("creating the process group", [&] {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout_);
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host_));
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>(name_, store_),
                                                           rank_, size_, options);
    });
  }

  std::string backend() const override { return "gloo"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_to_all_single(at::Tensor& output, const at::Tensor& input, const std::vector<int64_t>& output_splits,
                         const std::vector<int64_t>& input_splits) override {
    check_all_to_all(output, input, output_splits, input_splits, size_, "gloo communicator '" + name_ + "'");
    auto out_splits = output_splits, in_splits = input_splits;
    auto in = input;
    guard("all_to_all_single", [&] { group_->alltoall_base(output, in, out_splits, in_splits)->wait(timeout_); });
  }
  void all_reduce(at::Tensor& tensor, ReduceOp op) override {
    std::vector<at::Tensor> list{tensor};
    c10d::AllreduceOptions o;
    o.reduceOp = to_c10d(op);
    o.timeout = timeout_;
    guard("all_reduce", [&] { group_->allreduce(list, o)->wait(timeout_); });
  }
  std::unique_ptr<CommWork> all_reduce_async(at::Tensor& tensor) override {
    std::vector<at::Tensor> list{tensor};
    c10::intrusive_ptr<c10d::Work> work;
    c10d::AllreduceOptions o;
    o.timeout = timeout_;
    guard("all_reduce", [&] { work = group_->allreduce(list, o); });
    return std::make_unique<GlooWork>(std::move(work), this, "all_reduce");
  }
  at::Tensor all_gather(const at::Tensor& input) override {
    std::vector<int64_t> shape{size_};
    shape.insert(shape.end(), input.sizes().begin(), input.sizes().end());
    auto out = at::empty(shape, input.options());
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int q = 0; q < size_; ++q) outputs[0].push_back(out[q]);
    std::vector<at::Tensor> inputs{input.contiguous()};
    guard("all_gather", [&] { group_->allgather(outputs, inputs)->wait(timeout_); });
    return out;
  }
  void broadcast(at::Tensor& tensor, int root) override {
    MOE_CHECK(root >= 0 && root < size_, "gloo communicator '", name_, "': broadcast root must be in [0, ", size_,
              "), got ", root);
    std::vector<at::Tensor> list{tensor};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = timeout_;
    guard("broadcast", [&] { group_->broadcast(list, o)->wait(timeout_); });
  }
  void barrier() override {
    c10d::BarrierOptions o;
    o.timeout = timeout_;
    guard("barrier", [&] { group_->barrier(o)->wait(timeout_); });
  }
  std::shared_ptr<Communicator> subgroup(const std::vector<int>& ranks, const std::string& name) override {
    int mine = -1;
    for (size_t i = 0; i < ranks.size(); ++i) {
      MOE_CHECK(ranks[i] >= 0 && ranks[i] < size_ && (i == 0 || ranks[i] > ranks[i - 1]), "gloo communicator '",
                name_, "': subgroup '", name, "' ranks must be ascending ranks in [0, ", size_, ")");
      if (ranks[i] == rank_) mine = static_cast<int>(i);
    }
    MOE_CHECK(mine >= 0, "gloo communicator '", name_, "': rank ", rank_, " is not a member of subgroup '", name, "'");
    return std::make_shared<GlooCommunicator>(store_, mine, static_cast<int>(ranks.size()), name_ + "/" + name,
                                              timeout_, host_);
  }

  template <typename F>
  void guard(const char* op, F&& f) const {
    try {
      f();
    } catch (const c10::Error& e) {
      MOE_THROW("gloo communicator '", name_, "' (rank ", rank_, " of ", size_, "): ", op,
                " failed: ", e.what_without_backtrace(), " -- a peer process may have exited or hung (timeout ",
                timeout_.count() / 1000.0, " s)");
    } catch (const std::exception& e) {
      MOE_THROW("gloo communicator '", name_, "' (rank ", rank_, " of ", size_, "): ", op, " failed: ", e.what(),
                " -- a peer process may have exited or hung (timeout ", timeout_.count() / 1000.0, " s)");
    }
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  int rank_, size_;
  std::string host_;
};

void GlooWork::wait() {
  owner_->guard(op_, [&] { work_->wait(owner_->timeout()); });
}

}  // namespace

std::shared_ptr<Communicator> make_gloo_communicator(const CommunicatorOptions& options, const DistributedEnv& env) {
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000.0));
  auto store = make_tcp_store(options, env, "gloo");
  // Loopback when every process is on this machine's loopback address; else this host's name.
  const bool loopback = env.master_addr == "127.0.0.1" || env.master_addr == "localhost";
  std::string host = loopback ? "127.0.0.1" : std::string();
  if (host.empty()) {
    char name[256] = {0};
    ::gethostname(name, sizeof(name) - 1);
    host = name;
  }
  return std::make_shared<GlooCommunicator>(store, env.rank, env.world_size, "world", timeout, host);
}

}  // namespace moe::detail

#endif  // MOE_WITH_GLOO
