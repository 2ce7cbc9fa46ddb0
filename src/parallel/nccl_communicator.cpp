// The nccl backend (CUDA tier only): kernels/nccl_comm.h's NCCL communicator on LibTorch CUDA
// tensors and the current CUDA stream. The ncclUniqueId travels through a c10d TCPStore (rank 0 of
// each group creates it). Collectives are enqueued on the current stream and then waited for with
// the communicator's timeout (kernels::NcclComm::wait aborts and throws on a dead or hung peer), so
// a failure surfaces at the call that caused it.
#include "moe/core/build_config.h"

// MOE_NCCL_COMPILE_CHECK: CI compiles this file (without linking it) where the CUDA tier is off.
#if MOE_WITH_NCCL || defined(MOE_NCCL_COMPILE_CHECK)
#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <functional>

#include "moe/core/error.h"
#include "nccl_comm.h"
#include "parallel/backends.h"

namespace moe::detail {
namespace {

ncclDataType_t nccl_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    case at::kChar: return ncclInt8;
    default: MOE_THROW("nccl communicator: dtype ", t, " is not supported (float, double, half, bfloat16, int, long, byte)");
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kMin: return ncclMin;
    case ReduceOp::kMax: return ncclMax;
  }
  return ncclSum;
}

class NcclWork : public CommWork {
 public:
  explicit NcclWork(std::function<void()> wait) : wait_(std::move(wait)) {}
  void wait() override { wait_(); }

 private:
  std::function<void()> wait_;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size, std::string name,
                   std::chrono::milliseconds timeout)
      : store_(std::move(store)), rank_(rank), size_(size) {
    name_ = std::move(name);
    timeout_ = timeout;
    MOE_CHECK(at::hasCUDA(), "nccl communicator '", name_, "': no CUDA device is visible");
    guard("creating the communicator", [&] {
      const std::string key = name_ + "/nccl_unique_id";
      if (rank_ == 0) {
        const auto id = kernels::nccl_unique_id();
        store_->set(key, std::vector<uint8_t>(id.begin(), id.end()));
      }
      const auto bytes = store_->get(key);
      comm_ = std::make_unique<kernels::NcclComm>(std::string(bytes.begin(), bytes.end()), rank_, size_, timeout_);
    });
  }

  std::string backend() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_to_all_single(at::Tensor& output, const at::Tensor& input, const std::vector<int64_t>& output_splits,
                         const std::vector<int64_t>& input_splits) override {
    check_all_to_all(output, input, output_splits, input_splits, size_, "nccl communicator '" + name_ + "'");
    check_cuda(input, "all_to_all_single");
    const int64_t row = input.dim() > 1 ? input.numel() / std::max<int64_t>(1, input.size(0)) : 1;
    const int64_t row_elems = input.size(0) > 0 ? row : (output.size(0) > 0 ? output.numel() / output.size(0) : 1);
    run("all_to_all_single", input, [&](cudaStream_t s) {
      comm_->all_to_all_v(input.data_ptr(), input_splits, output.data_ptr(), output_splits, row_elems,
                          nccl_type(input.scalar_type()), s);
    });
  }
  void all_reduce(at::Tensor& tensor, ReduceOp op) override {
    check_cuda(tensor, "all_reduce");
    run("all_reduce", tensor, [&](cudaStream_t s) {
      comm_->all_reduce(tensor.data_ptr(), static_cast<size_t>(tensor.numel()), nccl_type(tensor.scalar_type()),
                        nccl_op(op), s);
    });
  }
  std::unique_ptr<CommWork> all_reduce_async(at::Tensor& tensor) override {
    all_reduce(tensor, ReduceOp::kSum);  // enqueued and waited for: NCCL's own stream ordering does the rest
    return std::make_unique<NcclWork>([] {});
  }
  at::Tensor all_gather(const at::Tensor& input_) override {
    auto input = input_.contiguous();
    check_cuda(input, "all_gather");
    std::vector<int64_t> shape{size_};
    shape.insert(shape.end(), input.sizes().begin(), input.sizes().end());
    auto out = at::empty(shape, input.options());
    run("all_gather", input, [&](cudaStream_t s) {
      comm_->all_gather(input.data_ptr(), out.data_ptr(), static_cast<size_t>(input.numel()),
                        nccl_type(input.scalar_type()), s);
    });
    return out;
  }
  void broadcast(at::Tensor& tensor, int root) override {
    check_cuda(tensor, "broadcast");
    MOE_CHECK(root >= 0 && root < size_, "nccl communicator '", name_, "': broadcast root must be in [0, ", size_,
              "), got ", root);
    run("broadcast", tensor, [&](cudaStream_t s) {
      comm_->broadcast(tensor.data_ptr(), static_cast<size_t>(tensor.numel()), nccl_type(tensor.scalar_type()), root,
                       s);
    });
  }
  void barrier() override {
    auto t = at::zeros({1}, at::TensorOptions().device(at::kCUDA));
    all_reduce(t, ReduceOp::kSum);
  }
  std::shared_ptr<Communicator> subgroup(const std::vector<int>& ranks, const std::string& name) override {
    int mine = -1;
    for (size_t i = 0; i < ranks.size(); ++i)
      if (ranks[i] == rank_) mine = static_cast<int>(i);
    MOE_CHECK(mine >= 0, "nccl communicator '", name_, "': rank ", rank_, " is not a member of subgroup '", name, "'");
    return std::make_shared<NcclCommunicator>(store_, mine, static_cast<int>(ranks.size()), name_ + "/" + name,
                                              timeout_);
  }

 private:
  void check_cuda(const at::Tensor& t, const char* op) const {
    MOE_CHECK(t.defined() && t.is_cuda() && t.is_contiguous(), "nccl communicator '", name_, "': ", op,
              " needs a contiguous CUDA tensor, got ", t.defined() ? t.device() : at::Device(at::kCPU));
  }
  template <typename F>
  void guard(const char* op, F&& f) {
    try {
      f();
    } catch (const moe::Error&) {
      throw;
    } catch (const std::exception& e) {
      MOE_THROW("nccl communicator '", name_, "' (rank ", rank_, " of ", size_, "): ", op, " failed: ", e.what());
    }
  }
  template <typename F>
  void run(const char* op, const at::Tensor& on, F&& enqueue) {
    c10::cuda::CUDAGuard device(on.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(on.device().index()).stream();
    guard(op, [&] {
      enqueue(stream);
      comm_->wait(stream);
    });
  }

  c10::intrusive_ptr<c10d::Store> store_;
  std::unique_ptr<kernels::NcclComm> comm_;
  int rank_, size_;
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(const CommunicatorOptions& options, const DistributedEnv& env) {
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000.0));
  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = env.world_size;
    so.waitWorkers = true;
    so.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    MOE_THROW("nccl rendezvous at MASTER_ADDR=", env.master_addr, " MASTER_PORT=", env.master_port, " (rank ",
              env.rank, " of ", env.world_size, ", timeout ", options.timeout_s, " s) failed: ", e.what());
  }
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(env.local_rank % std::max(1, static_cast<int>(c10::cuda::device_count()))));
  return std::make_shared<NcclCommunicator>(store, env.rank, env.world_size, "world", timeout);
}

}  // namespace moe::detail

#endif  // MOE_WITH_NCCL || MOE_NCCL_COMPILE_CHECK
