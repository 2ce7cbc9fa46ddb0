// CUDA glue of the ops (see ops_cuda.h): LibTorch tensors in, kernels/ launches on the current
// stream of the tensors' device, every launch checked.
#include "ops/cuda/ops_cuda.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <string>

#include "layout.cuh"
#include "moe/core/error.h"
#include "permute.cuh"
#include "router_epilogue.cuh"

namespace moe::detail::cuda {
namespace {

namespace k = moe::kernels;

void check_launch(cudaError_t err, const char* op) {
  MOE_CHECK(err == cudaSuccess, op, ": CUDA error ", static_cast<int>(err), " (", cudaGetErrorString(err), ")");
}

k::DType kernel_dtype(const at::Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case at::kFloat: return k::DType::kFloat32;
    case at::kBFloat16: return k::DType::kBFloat16;
    case at::kHalf: return k::DType::kFloat16;
    default: break;
  }
  throw Error(std::string(op) + ": dtype must be float32, bfloat16 or float16 on CUDA, got " +
              std::string(c10::toString(t.scalar_type())));
}

void check_cuda(const at::Tensor& t, const char* op, const char* name) {
  MOE_CHECK(t.defined() && t.is_cuda(), op, ": ", name, " must be a CUDA tensor");
}

}  // namespace

DispatchLayout build_layout(const at::Tensor& expert_index, int64_t num_experts, int64_t capacity,
                            const at::Tensor& priority) {
  check_cuda(expert_index, "build_layout", "expert_index");
  MOE_CHECK(num_experts <= 4096, "build_layout: num_experts must be <= 4096 on CUDA, got ", num_experts);
  c10::cuda::CUDAGuard guard(expert_index.device());
  const int64_t T = expert_index.size(0), K = expert_index.size(1);
  MOE_CHECK(T * K < (int64_t{1} << 31), "build_layout: T*K = ", T * K, " must be below 2^31 on CUDA");
  auto ids = expert_index.contiguous();
  at::Tensor prio;
  if (priority.defined()) {
    MOE_CHECK(priority.device() == expert_index.device(), "build_layout: priority is on ", priority.device(),
              " but expert_index is on ", expert_index.device());
    prio = priority.to(at::kDouble).contiguous();
  }
  cudaError_t err = cudaSuccess;
  const std::size_t bytes = k::layout_workspace_bytes(T, K, num_experts, prio.defined(), &err);
  check_launch(err, "build_layout");
  auto long_opts = ids.options().dtype(at::kLong);
  auto workspace = at::empty({static_cast<int64_t>(bytes)}, ids.options().dtype(at::kByte));
  auto row_token = at::empty({T * K}, long_opts);
  auto row_slot = at::empty({T * K}, long_opts);
  auto slot_row = at::empty({T, K}, long_opts);
  auto offsets = at::empty({num_experts + 1}, long_opts);
  auto summary = at::empty({k::LayoutSummary::size(num_experts)}, long_opts);
  auto stream = at::cuda::getCurrentCUDAStream();
  check_launch(k::launch_build_layout(ids.data_ptr<int64_t>(), prio.defined() ? prio.data_ptr<double>() : nullptr, T,
                                      K, num_experts, capacity, workspace.data_ptr(), bytes,
                                      row_token.data_ptr<int64_t>(), row_slot.data_ptr<int64_t>(),
                                      slot_row.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(),
                                      summary.data_ptr<int64_t>(), stream),
               "build_layout");
  // The one transfer to the host (see ops_cuda.h).
  auto host = summary.to(at::kCPU);
  const int64_t* s = host.data_ptr<int64_t>();
  const int64_t E = num_experts;
  if (s[k::LayoutSummary::invalid(E)] != 0 || s[k::LayoutSummary::duplicates(E)] != 0) {
    // Bad routing: the CPU build names the first offending (token, slot).
    moe::build_layout(ids.cpu(), num_experts, capacity, prio.defined() ? prio.cpu() : at::Tensor());
    throw Error("build_layout: expert_index has " + std::to_string(s[k::LayoutSummary::invalid(E)]) +
                " ids outside [-1, " + std::to_string(E) + ") and " +
                std::to_string(s[k::LayoutSummary::duplicates(E)]) + " repeated experts within a token");
  }
  const int64_t N = s[k::LayoutSummary::rows(E)];
  DispatchLayout layout;
  layout.num_tokens = T;
  layout.top_k = K;
  layout.num_experts = E;
  layout.capacity = capacity;
  layout.tokens_per_expert = host.narrow(0, k::LayoutSummary::kKept, E).clone();
  layout.requested_per_expert = host.narrow(0, k::LayoutSummary::requested(E), E).clone();
  layout.expert_offsets = offsets;
  layout.row_token = row_token.narrow(0, 0, N);
  layout.row_slot = row_slot.narrow(0, 0, N);
  layout.slot_row = slot_row;
  layout.num_dropped = at::scalar_tensor(s[k::LayoutSummary::dropped(E)], at::TensorOptions().dtype(at::kLong));
  return layout;
}

at::Tensor gather_rows(const at::Tensor& src_, const at::Tensor& index_) {
  check_cuda(src_, "dispatch", "x");
  kernel_dtype(src_, "dispatch");
  c10::cuda::CUDAGuard guard(src_.device());
  auto src = src_.contiguous();
  auto index = index_.contiguous();
  auto out = at::empty({index.size(0), src.size(1)}, src.options());
  check_launch(k::launch_gather_rows(src.data_ptr(), out.data_ptr(), index.data_ptr<int64_t>(), index.size(0),
                                     src.size(1) * static_cast<int64_t>(src.element_size()),
                                     at::cuda::getCurrentCUDAStream()),
               "dispatch");
  return out;
}

at::Tensor gather_sum(const at::Tensor& src_, const at::Tensor& slot_row_, const at::Tensor& weight_) {
  check_cuda(src_, "combine", "packed rows");
  const auto dtype = kernel_dtype(src_, "combine");
  c10::cuda::CUDAGuard guard(src_.device());
  auto src = src_.contiguous();
  auto slot_row = slot_row_.contiguous();
  at::Tensor weight;
  if (weight_.defined()) weight = weight_.to(at::kFloat).contiguous();
  const int64_t T = slot_row.size(0), K = slot_row.size(1), d = src.size(1);
  auto out = at::empty({T, d}, src.options());
  check_launch(k::launch_gather_sum(dtype, src.data_ptr(), slot_row.data_ptr<int64_t>(),
                                    weight.defined() ? weight.data_ptr<float>() : nullptr, T, K, d, out.data_ptr(),
                                    at::cuda::getCurrentCUDAStream()),
               "combine");
  return out;
}

std::pair<at::Tensor, at::Tensor> combine_backward(const at::Tensor& grad_y_, const at::Tensor& packed_,
                                                   const at::Tensor& slot_row_, const at::Tensor& weight_) {
  check_cuda(packed_, "combine backward", "packed_out");
  const auto dtype = kernel_dtype(packed_, "combine backward");
  c10::cuda::CUDAGuard guard(packed_.device());
  auto packed = packed_.contiguous();
  auto grad_y = grad_y_.to(packed.scalar_type()).contiguous();
  auto slot_row = slot_row_.contiguous();
  auto weight = weight_.to(at::kFloat).contiguous();
  const int64_t T = slot_row.size(0), K = slot_row.size(1), d = packed.size(1);
  auto grad_packed = at::empty_like(packed);
  auto grad_weight = at::empty({T, K}, weight.options());
  check_launch(k::launch_combine_backward(dtype, grad_y.data_ptr(), packed.data_ptr(), slot_row.data_ptr<int64_t>(),
                                          weight.data_ptr<float>(), T, K, d, grad_packed.data_ptr(),
                                          grad_weight.data_ptr<float>(), at::cuda::getCurrentCUDAStream()),
               "combine backward");
  return {grad_packed, grad_weight};
}

std::pair<at::Tensor, at::Tensor> softmax_topk(const at::Tensor& logits_, int64_t top_k) {
  check_cuda(logits_, "softmax_topk", "logits");
  c10::cuda::CUDAGuard guard(logits_.device());
  auto logits = logits_.contiguous();
  const int64_t T = logits.size(0), E = logits.size(1);
  auto probs = at::empty({T, E}, logits.options());
  auto index = at::empty({T, top_k}, logits.options().dtype(at::kLong));
  check_launch(k::launch_softmax_topk(logits.data_ptr<float>(), T, E, top_k, probs.data_ptr<float>(),
                                      index.data_ptr<int64_t>(), at::cuda::getCurrentCUDAStream()),
               "softmax_topk");
  return {probs, index};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> softmax_threshold(const at::Tensor& logits_, double threshold) {
  check_cuda(logits_, "softmax_threshold", "logits");
  c10::cuda::CUDAGuard guard(logits_.device());
  auto logits = logits_.contiguous();
  const int64_t T = logits.size(0), E = logits.size(1);
  auto probs = at::empty({T, E}, logits.options());
  auto index = at::empty({T, E}, logits.options().dtype(at::kLong));
  auto count = at::empty({T}, logits.options().dtype(at::kLong));
  check_launch(k::launch_softmax_threshold(logits.data_ptr<float>(), T, E, threshold, probs.data_ptr<float>(),
                                           index.data_ptr<int64_t>(), count.data_ptr<int64_t>(),
                                           at::cuda::getCurrentCUDAStream()),
               "softmax_threshold");
  return {probs, index, count};
}

int compute_capability_major(const at::Tensor& t) {
  return at::cuda::getDeviceProperties(t.device().index())->major;
}

}  // namespace moe::detail::cuda
