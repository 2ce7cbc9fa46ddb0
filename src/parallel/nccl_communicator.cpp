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
    device_ = c10::cuda::current_device();
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

  // CPU tensors (counts, pass agreement, loss sums, generator states) are staged through the
  // current device: NCCL only moves device memory.
  void all_to_all_single(at::Tensor& output, const at::Tensor& input, const std::vector<int64_t>& output_splits,
                         const std::vector<int64_t>& input_splits) override {
    check_all_to_all(output, input, output_splits, input_splits, size_, "nccl communicator '" + name_ + "'");
    auto in = staged(input), out = staged(output);
    const int64_t rows = std::max(in.size(0), out.size(0));
    const int64_t row_elems = rows > 0 ? (in.size(0) > 0 ? in.numel() / in.size(0) : out.numel() / out.size(0)) : 1;
    run("all_to_all_single", in, [&](cudaStream_t st) {
      comm_->all_to_all_v(in.data_ptr(), input_splits, out.data_ptr(), output_splits, row_elems,
                          nccl_type(in.scalar_type()), st);
    });
    if (!output.is_cuda()) output.copy_(out);
  }
  void all_reduce(at::Tensor& tensor, ReduceOp op) override {
    MOE_CHECK(tensor.is_contiguous(), "nccl communicator '", name_, "': all_reduce needs a contiguous tensor");
    auto t = staged(tensor);
    run("all_reduce", t, [&](cudaStream_t st) {
      comm_->all_reduce(t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t.scalar_type()), nccl_op(op), st);
    });
    if (!tensor.is_cuda()) tensor.copy_(t);
  }
  /// Blocking (enqueued and waited for): GradientSynchronizer therefore starts no bucket during
  /// backward on this backend (see supports_overlap()).
  std::unique_ptr<CommWork> all_reduce_async(at::Tensor& tensor) override {
    all_reduce(tensor, ReduceOp::kSum);
    return std::make_unique<NcclWork>([] {});
  }
  bool supports_overlap() const override { return false; }
  at::Tensor all_gather(const at::Tensor& input_) override {
    auto input = staged(input_.contiguous());
    std::vector<int64_t> shape{size_};
    shape.insert(shape.end(), input.sizes().begin(), input.sizes().end());
    auto out = at::empty(shape, input.options());
    run("all_gather", input, [&](cudaStream_t st) {
      comm_->all_gather(input.data_ptr(), out.data_ptr(), static_cast<size_t>(input.numel()),
                        nccl_type(input.scalar_type()), st);
    });
    return input_.is_cuda() ? out : out.to(input_.device());
  }
  void broadcast(at::Tensor& tensor, int root) override {
    MOE_CHECK(root >= 0 && root < size_, "nccl communicator '", name_, "': broadcast root must be in [0, ", size_,
              "), got ", root);
    MOE_CHECK(tensor.is_contiguous(), "nccl communicator '", name_, "': broadcast needs a contiguous tensor");
    auto t = staged(tensor);
    run("broadcast", t, [&](cudaStream_t st) {
      comm_->broadcast(t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t.scalar_type()), root, st);
    });
    if (!tensor.is_cuda()) tensor.copy_(t);
  }
  void barrier() override {
    auto t = at::zeros({1}, at::TensorOptions().device(at::kCUDA, device_));
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
  at::Tensor staged(const at::Tensor& t) const {
    MOE_CHECK(t.defined(), "nccl communicator '", name_, "': a tensor argument is undefined");
    return t.is_cuda() ? t : t.to(at::Device(at::kCUDA, device_)).contiguous();
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
  c10::DeviceIndex device_ = 0;  ///< where CPU arguments are staged
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(const CommunicatorOptions& options, const DistributedEnv& env) {
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000.0));
  auto store = make_tcp_store(options, env, "nccl");
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(env.local_rank % std::max(1, static_cast<int>(c10::cuda::device_count()))));
  return std::make_shared<NcclCommunicator>(store, env.rank, env.world_size, "world", timeout);
}

}  // namespace moe::detail

#endif  // MOE_WITH_NCCL || MOE_NCCL_COMPILE_CHECK
