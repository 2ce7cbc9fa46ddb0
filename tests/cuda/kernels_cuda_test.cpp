// *_CUDA tests: every kernel of kernels/ against the CPU implementation of the same op, on fresh random
// inputs each run (the seed is printed), with every output poisoned (NaN for floats, a garbage
// pattern for integers) before the launch to prove that each element is written. Integer maps must
// be identical; floats agree within the suite's per-dtype tolerances. Hostile cases: zero tokens, one
// expert takes every token, capacity overflow and zero capacity, hidden sizes that are not a multiple
// of 8, k = E. Skipped at run time when no CUDA device is present.
//
// The kernels are driven through raw device buffers, so these tests run on the CPU tier of LibTorch
// too. The tests of the CUDA glue (CUDA tensors, autograd, the MoE layer) are in ops_cuda_test.cpp.
#include <ATen/ATen.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <limits>
#include <random>

#include "layout.cuh"
#include "moe/ops/dispatch_combine.h"
#include "moe/ops/layout.h"
#include "moe/ops/router_epilogue.h"
#include "permute.cuh"
#include "router_epilogue.cuh"
#include "tolerances.h"

namespace moe {
namespace {

namespace k = moe::kernels;
using testing::all_close;
using testing::tolerance_for;

bool gpu_present() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define MOE_REQUIRE_GPU() \
  if (!gpu_present()) GTEST_SKIP() << "no CUDA device"

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << cudaGetErrorString(cudaGetLastError())

uint64_t fresh_seed() {
  const auto seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  std::printf("[ seed     ] %llu\n", static_cast<unsigned long long>(seed));
  return seed;
}

// A device copy of a CPU tensor's bytes (or an uninitialised buffer), poisoned on request.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes_ > 0 && cudaMalloc(&ptr_, bytes_) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
  }
  explicit DeviceBuffer(const at::Tensor& cpu) : DeviceBuffer(cpu.numel() * cpu.element_size()) {
    auto c = cpu.contiguous();
    if (bytes_ > 0) cudaMemcpy(ptr_, c.data_ptr(), bytes_, cudaMemcpyHostToDevice);
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  /// 0xFF bytes: NaN in fp32, bf16 and fp16. 0x5A bytes: an int64 no map ever holds.
  void poison_float() { cudaMemset(ptr_, 0xff, bytes_); }
  void poison_int() { cudaMemset(ptr_, 0x5a, bytes_); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  void* get() const { return ptr_; }
  /// The first numel elements of `dtype`, as a CPU tensor of `shape`.
  at::Tensor download(at::IntArrayRef shape, c10::ScalarType dtype) const {
    auto out = at::empty(shape, at::TensorOptions().dtype(dtype));
    const size_t n = out.numel() * out.element_size();
    if (n > 0) cudaMemcpy(out.data_ptr(), ptr_, n, cudaMemcpyDeviceToHost);
    return out;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

k::DType kernel_dtype(c10::ScalarType t) {
  return t == at::kFloat ? k::DType::kFloat32 : t == at::kBFloat16 ? k::DType::kBFloat16 : k::DType::kFloat16;
}

// Distinct experts per token: the first K of a random permutation, with empty slots (-1) mixed in.
at::Tensor random_routing(int64_t T, int64_t K, int64_t E, double empty_fraction, at::Generator& gen) {
  auto ids = at::rand({T, E}, gen).argsort(/*stable=*/true, /*dim=*/1, /*descending=*/false).narrow(1, 0, K).contiguous();
  if (empty_fraction > 0) {
    auto empty = at::rand({T, K}, gen).lt(empty_fraction);
    ids = at::where(empty, at::full({}, -1, ids.options()), ids);
  }
  return ids;
}

// ---- layout --------------------------------------------------------------------------------------

struct LayoutResult {
  at::Tensor row_token, row_slot, slot_row, offsets, summary;
};

LayoutResult run_layout_kernel(const at::Tensor& ids, const at::Tensor& priority, int64_t E, int64_t capacity) {
  const int64_t T = ids.size(0), K = ids.size(1), n = T * K;
  cudaError_t err = cudaSuccess;
  const size_t ws_bytes = k::layout_workspace_bytes(T, K, E, priority.defined(), &err);
  EXPECT_EQ(err, cudaSuccess);
  DeviceBuffer d_ids(ids), ws(ws_bytes), rt(n * 8), rs(n * 8), sr(n * 8), off((E + 1) * 8),
      summary(k::LayoutSummary::size(E) * 8);
  std::unique_ptr<DeviceBuffer> d_prio;
  if (priority.defined()) d_prio = std::make_unique<DeviceBuffer>(priority.to(at::kDouble).contiguous());
  for (auto* b : {&rt, &rs, &sr, &off, &summary}) b->poison_int();
  EXPECT_EQ(k::launch_build_layout(d_ids.as<int64_t>(), d_prio ? d_prio->as<double>() : nullptr, T, K, E, capacity,
                                   ws.get(), ws_bytes, rt.as<int64_t>(), rs.as<int64_t>(), sr.as<int64_t>(),
                                   off.as<int64_t>(), summary.as<int64_t>(), nullptr),
            cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  LayoutResult r;
  r.summary = summary.download({k::LayoutSummary::size(E)}, at::kLong);
  const int64_t N = r.summary[k::LayoutSummary::rows(E)].item<int64_t>();
  r.row_token = rt.download({N}, at::kLong);
  r.row_slot = rs.download({N}, at::kLong);
  r.slot_row = sr.download({T, K}, at::kLong);
  r.offsets = off.download({E + 1}, at::kLong);
  return r;
}

void expect_same_layout(const at::Tensor& ids, const at::Tensor& priority, int64_t E, int64_t capacity) {
  SCOPED_TRACE("T=" + std::to_string(ids.size(0)) + " K=" + std::to_string(ids.size(1)) + " E=" + std::to_string(E) +
               " capacity=" + std::to_string(capacity) + (priority.defined() ? " priority" : " fcfs"));
  const auto ref = build_layout(ids, E, capacity, priority);
  const auto got = run_layout_kernel(ids, priority, E, capacity);
  const auto& s = got.summary;
  EXPECT_TRUE(at::equal(s.narrow(0, 0, E), ref.tokens_per_expert));
  EXPECT_TRUE(at::equal(s.narrow(0, E, E), ref.requested_per_expert));
  EXPECT_EQ(s[k::LayoutSummary::rows(E)].item<int64_t>(), ref.num_rows());
  EXPECT_EQ(s[k::LayoutSummary::dropped(E)].item<int64_t>(), ref.num_dropped.item<int64_t>());
  EXPECT_EQ(s[k::LayoutSummary::invalid(E)].item<int64_t>(), 0);
  EXPECT_EQ(s[k::LayoutSummary::duplicates(E)].item<int64_t>(), 0);
  EXPECT_TRUE(at::equal(got.offsets, ref.expert_offsets));
  EXPECT_TRUE(at::equal(got.row_token, ref.row_token));
  EXPECT_TRUE(at::equal(got.row_slot, ref.row_slot));
  EXPECT_TRUE(at::equal(got.slot_row, ref.slot_row));
}

TEST(LayoutKernel_CUDA, MatchesCpuLayoutOnRandomRouting) {
  MOE_REQUIRE_GPU();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  struct Case {
    int64_t T, K, E;
    double empty;
  };
  for (const Case c : {Case{1000, 2, 8, 0.0}, Case{4096, 8, 64, 0.1}, Case{777, 1, 3, 0.0}, Case{300, 16, 256, 0.3},
                       Case{5000, 2, 4096, 0.0}, Case{64, 8, 8, 0.0} /* k = E */}) {
    auto ids = random_routing(c.T, c.K, c.E, c.empty, gen);
    const int64_t fair = (c.T * c.K + c.E - 1) / c.E;
    for (int64_t capacity : {int64_t{-1}, int64_t{0}, fair / 2, fair, 2 * fair}) {
      expect_same_layout(ids, at::Tensor(), c.E, capacity);
      expect_same_layout(ids, at::rand({c.T, c.K}, gen, at::kFloat), c.E, capacity);
    }
    // Priorities with ties keep first-come-first-served order among equals.
    expect_same_layout(ids, at::randint(0, 3, {c.T, c.K}, gen, at::kDouble), c.E, fair / 2);
  }
}

TEST(LayoutKernel_CUDA, HostileRouting) {
  MOE_REQUIRE_GPU();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  // Zero tokens.
  expect_same_layout(at::empty({0, 2}, at::kLong), at::Tensor(), 8, -1);
  // One expert takes every token (slot 0), overflowing its capacity.
  auto ids = random_routing(2048, 2, 16, 0.0, gen);
  ids.select(1, 0).fill_(5);
  ids.select(1, 1).masked_fill_(ids.select(1, 1).eq(5), 6);
  for (int64_t capacity : {int64_t{-1}, int64_t{100}, int64_t{1}}) expect_same_layout(ids, at::Tensor(), 16, capacity);
  // Every slot empty.
  expect_same_layout(at::full({50, 4}, -1, at::kLong), at::Tensor(), 4, 3);
  // One expert.
  expect_same_layout(at::zeros({300, 1}, at::kLong), at::Tensor(), 1, 120);
}

TEST(LayoutKernel_CUDA, CountsInvalidIdsAndRepeatedExperts) {
  MOE_REQUIRE_GPU();
  auto ids = at::tensor({0, 1, 7, 2, 3, 3, -1, -1}, at::kLong).view({4, 2});  // 7 is out of range, 3 twice
  const auto got = run_layout_kernel(ids, at::Tensor(), 4, -1);
  EXPECT_EQ(got.summary[k::LayoutSummary::invalid(4)].item<int64_t>(), 1);
  EXPECT_EQ(got.summary[k::LayoutSummary::duplicates(4)].item<int64_t>(), 1);
}

// ---- dispatch and combine --------------------------------------------------------------------------

struct PermuteCase {
  int64_t T, K, E, d;
  double empty;
  int64_t capacity;  // -1, or a fraction of fair share below
};

std::vector<PermuteCase> permute_cases() {
  return {
      {2000, 2, 8, 4096, 0.0, -1},  // Mixtral-like rows, 16-byte packs
      {1500, 8, 64, 768, 0.2, 20},  // XMoE-like, with drops
      {333, 3, 5, 13, 0.1, -1},     // d not a multiple of 8: element-wise path
      {128, 4, 4, 1, 0.0, 50},      // d = 1, k = E
      {0, 2, 4, 64, 0.0, -1},       // zero tokens
      {700, 1, 2, 520, 0.0, 5},     // almost every token dropped
  };
}

TEST(DispatchKernel_CUDA, GatherRowsIsExactInEveryDtype) {
  MOE_REQUIRE_GPU();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const auto& c : permute_cases()) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + " d=" + std::to_string(c.d) + " T=" + std::to_string(c.T));
      auto layout = build_layout(random_routing(c.T, c.K, c.E, c.empty, gen), c.E, c.capacity);
      auto x = at::randn({c.T, c.d}, gen).to(dtype);
      const int64_t N = layout.num_rows();
      DeviceBuffer dx(x), index(layout.row_token), out(N * c.d * x.element_size());
      out.poison_float();
      CUDA_OK(k::launch_gather_rows(dx.get(), out.get(), index.as<int64_t>(), N, c.d * x.element_size(), nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      EXPECT_TRUE(at::equal(out.download({N, c.d}, dtype), dispatch(x, layout)));
    }
  }
}

TEST(CombineKernel_CUDA, ForwardAndBackwardMatchTheCpuOps) {
  MOE_REQUIRE_GPU();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    const auto tol = tolerance_for(dtype);
    for (const auto& c : permute_cases()) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + " d=" + std::to_string(c.d) + " T=" + std::to_string(c.T));
      auto layout = build_layout(random_routing(c.T, c.K, c.E, c.empty, gen), c.E, c.capacity);
      const int64_t N = layout.num_rows(), T = c.T, K = c.K, d = c.d;
      auto packed = at::randn({N, d}, gen).to(dtype).requires_grad_(true);
      auto weight = at::rand({T, K}, gen).requires_grad_(true);
      auto dy = at::randn({T, d}, gen).to(dtype);
      // CPU reference: the autograd ops of moe/ops/dispatch_combine.h.
      auto y_ref = combine(packed, layout, weight);
      y_ref.backward(dy);
      const bool nonzero = T > 0 && N > 0;

      DeviceBuffer d_packed(packed.detach()), d_slot(layout.slot_row), d_w(weight.detach()), d_dy(dy),
          y(T * d * packed.element_size()), g_packed(N * d * packed.element_size()), g_w(T * K * 4),
          g_x(T * d * packed.element_size());
      for (auto* b : {&y, &g_packed, &g_w, &g_x}) b->poison_float();
      CUDA_OK(k::launch_gather_sum(kernel_dtype(dtype), d_packed.get(), d_slot.as<int64_t>(), d_w.as<float>(), T, K,
                                   d, y.get(), nullptr));
      CUDA_OK(k::launch_combine_backward(kernel_dtype(dtype), d_dy.get(), d_packed.get(), d_slot.as<int64_t>(),
                                         d_w.as<float>(), T, K, d, g_packed.get(), g_w.as<float>(), nullptr));
      // Dispatch backward: the unweighted gather-sum of a packed gradient (here: packed itself).
      CUDA_OK(k::launch_gather_sum(kernel_dtype(dtype), d_packed.get(), d_slot.as<int64_t>(), nullptr, T, K, d,
                                   g_x.get(), nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      auto x_for_dispatch = at::zeros({T, d}, at::TensorOptions().dtype(dtype)).requires_grad_(true);
      auto packed_grad_of_dispatch = dispatch(x_for_dispatch, layout);
      packed_grad_of_dispatch.backward(packed.detach());
      EXPECT_TRUE(all_close(y.download({T, d}, dtype), y_ref.detach(), tol, nonzero));
      EXPECT_TRUE(all_close(g_packed.download({N, d}, dtype), packed.grad(), tol, nonzero));
      EXPECT_TRUE(all_close(g_w.download({T, K}, at::kFloat), weight.grad(), {tol.atol * 10, tol.rtol * 10}, nonzero));
      EXPECT_TRUE(all_close(g_x.download({T, d}, dtype), x_for_dispatch.grad(), tol, nonzero));
    }
  }
}

// ---- router epilogue ------------------------------------------------------------------------------

TEST(RouterEpilogueKernel_CUDA, SoftmaxTopKMatchesTheGreedyLoop) {
  MOE_REQUIRE_GPU();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  struct Case {
    int64_t T, E, K;
  };
  for (const Case c : {Case{4096, 8, 2}, Case{1000, 64, 8}, Case{513, 256, 8}, Case{100, 5, 5}, Case{10, 1, 1},
                       Case{0, 16, 2}, Case{2000, 200, 1}}) {
    SCOPED_TRACE("T=" + std::to_string(c.T) + " E=" + std::to_string(c.E) + " K=" + std::to_string(c.K));
    auto logits = at::randn({c.T, c.E}, gen) * 3;
    const auto ref = softmax_topk(logits, c.K);
    DeviceBuffer d_logits(logits), probs(c.T * c.E * 4), index(c.T * c.K * 8);
    probs.poison_float();
    index.poison_int();
    CUDA_OK(k::launch_softmax_topk(d_logits.as<float>(), c.T, c.E, c.K, probs.as<float>(), index.as<int64_t>(), nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_TRUE(all_close(probs.download({c.T, c.E}, at::kFloat), ref.probs, {1e-6, 1e-5}, c.T > 0));
    EXPECT_TRUE(at::equal(index.download({c.T, c.K}, at::kLong), ref.index));
  }
  // Masked experts (-inf) and NaN logits: the selection still names k distinct experts in range, in
  // the CPU loop's order (NaN first, as argmax ranks it; then the larger logit; ties to the lower id).
  {
    const float inf = std::numeric_limits<float>::infinity();
    auto masked = at::full({4, 8}, -inf);
    masked[0][5] = 1.f;                                    // one finite logit, k = 3
    masked[1][2] = std::numeric_limits<float>::quiet_NaN();  // a NaN among -inf
    masked[2].fill_(2.f);                                  // all tied
    masked[3][7] = 0.5f;
    masked[3][1] = 0.5f;
    const auto ref = softmax_topk(masked, 3);
    DeviceBuffer d_masked(masked), probs(4 * 8 * 4), index(4 * 3 * 8);
    index.poison_int();
    CUDA_OK(k::launch_softmax_topk(d_masked.as<float>(), 4, 8, 3, probs.as<float>(), index.as<int64_t>(), nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    auto got = index.download({4, 3}, at::kLong);
    EXPECT_TRUE(at::equal(got, ref.index)) << got << "\n" << ref.index;
    EXPECT_TRUE(at::equal(ref.index[0], at::tensor(std::vector<int64_t>{5, 0, 1}, at::kLong)));
  }
  // Ties go to the lower expert id.
  auto tied = at::zeros({3, 16});
  DeviceBuffer d_tied(tied), probs(3 * 16 * 4), index(3 * 4 * 8);
  CUDA_OK(k::launch_softmax_topk(d_tied.as<float>(), 3, 16, 4, probs.as<float>(), index.as<int64_t>(), nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_TRUE(at::equal(index.download({3, 4}, at::kLong), at::arange(4, at::kLong).expand({3, 4})));
}

TEST(RouterEpilogueKernel_CUDA, ThresholdSelectionMatchesTheAtenRule) {
  MOE_REQUIRE_GPU();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  for (double threshold : {0.9, 0.5, 1.0, 1e-3}) {
    for (int64_t E : {int64_t{64}, int64_t{256}, int64_t{7}}) {
      SCOPED_TRACE("E=" + std::to_string(E) + " threshold=" + std::to_string(threshold));
      const int64_t T = 3000;
      auto logits = at::randn({T, E}, gen) * at::rand({T, 1}, gen) * 4;  // sure and unsure tokens
      DeviceBuffer d_logits(logits), probs(T * E * 4), index(T * E * 8), count(T * 8);
      probs.poison_float();
      index.poison_int();
      count.poison_int();
      CUDA_OK(k::launch_softmax_threshold(d_logits.as<float>(), T, E, threshold, probs.as<float>(), index.as<int64_t>(),
                                          count.as<int64_t>(), nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      auto p = probs.download({T, E}, at::kFloat);
      EXPECT_TRUE(all_close(p, at::softmax(logits, -1), {1e-6, 1e-5}));
      // The selection rule applied to the kernel's own probabilities must give the same experts.
      auto ref = threshold_select(p, threshold).first;
      auto got = index.download({T, E}, at::kLong);
      auto counts = count.download({T}, at::kLong);
      EXPECT_TRUE(at::equal(counts, ref.ge(0).sum(1)));
      const int64_t K = ref.size(1);
      EXPECT_TRUE(at::equal(got.narrow(1, 0, K), ref));
      if (K < E) {
        EXPECT_TRUE(got.narrow(1, K, E - K).eq(-1).all().item<bool>());
      }
    }
  }
}

}  // namespace
}  // namespace moe
