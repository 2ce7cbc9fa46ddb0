// GPU benchmark of the MoE data path (CUDA tier): checks every kernel against ATen on the GPU, then
// times it with CUDA events (warm-up, then the median of repeated runs) against ceilings measured in
// the same run:
//   1. ceilings: device-to-device copy bandwidth (bytes read + written) and the bf16 matmul rate
//      (8192^3, random data)
//   2. dispatch and combine kernels, forward and backward, bf16, d = 4096, T = 16K..64K tokens,
//      E = 8/64, k = 2/8: GB/s (minimum bytes: each input read once, each output written once) and
//      the fraction of the copy ceiling; ATen's index_select / index_add_ timed on the same data
//   3. the MoE layer forward + backward in bf16 against two PyTorch-native formulations timed in the
//      same run: the one-hot einsum dispatch of fairseq / DeepSpeed (GShard's formulation) and
//      index_select / index_add_
//   4. expert GEMMs (ExpertBank forward + backward) for Mixtral-like and XMoE-like shapes: TFLOP/s and
//      the fraction of the measured bf16 matmul rate, grouped_mm against one GEMM per expert
// Prints markdown tables (bench/RESULTS.md takes them as they are).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "moe/layers/expert_bank.h"
#include "moe/layers/moe_layer.h"
#include "moe/ops/dispatch_combine.h"
#include "moe/ops/grouped_gemm.h"
#include "moe/ops/layout.h"
#include "moe/ops/router_epilogue.h"
#include "permute.cuh"

namespace {

using moe::DispatchLayout;

const at::Device kGpu(at::kCUDA, 0);

// Median milliseconds of `fn` on the current stream, timed with CUDA events after `warmup` calls.
double median_ms(const std::function<void()>& fn, int warmup = 3, int reps = 15) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaDeviceSynchronize();
  auto stream = at::cuda::getCurrentCUDAStream();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(start, stream);
    fn();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float t = 0;
    cudaEventElapsedTime(&t, start, stop);
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<double>();
}

void require(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("check failed: " + what);
}

struct Ceilings {
  double copy_gbs = 0;      // device-to-device copy, read + write
  double matmul_tflops = 0; // bf16 8192^3
};

Ceilings measure_ceilings() {
  Ceilings c;
  const int64_t bytes = int64_t{2} << 30;  // 2 GiB each way
  auto src = at::randint(0, 255, {bytes}, at::TensorOptions().dtype(at::kByte).device(kGpu));
  auto dst = at::empty_like(src);
  const double ms = median_ms([&] { dst.copy_(src); });
  c.copy_gbs = 2.0 * bytes / (ms * 1e6);
  const int64_t n = 8192;
  auto a = at::randn({n, n}, at::TensorOptions().dtype(at::kBFloat16).device(kGpu));
  auto b = at::randn({n, n}, at::TensorOptions().dtype(at::kBFloat16).device(kGpu));
  auto out = at::empty({n, n}, a.options());
  const double mm = median_ms([&] { at::mm_out(out, a, b); }, 3, 10);
  c.matmul_tflops = 2.0 * n * n * n / (mm * 1e9);
  return c;
}

// ---- 2. dispatch and combine ------------------------------------------------------------------------
void bench_permute(const Ceilings& ceil, const std::vector<int64_t>& token_counts) {
  std::printf("\n### Dispatch and combine kernels (bf16, d = 4096, no capacity limit)\n\n");
  std::printf("| T | E | k | op | kernel ms | kernel GB/s | of copy | via moe op ms | ATen ms | op vs ATen |\n");
  std::printf("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
  const int64_t d = 4096;
  const double elem = 2;
  for (int64_t T : token_counts) {
    for (auto [E, K] : std::vector<std::pair<int64_t, int64_t>>{{8, 2}, {64, 2}, {64, 8}}) {
      auto logits = at::randn({T, E}, at::TensorOptions().device(kGpu));
      auto ids = moe::softmax_topk(logits, K).index;
      DispatchLayout layout = moe::build_layout(ids, E, -1);
      const int64_t N = layout.num_rows();
      auto x = at::randn({T, d}, at::TensorOptions().dtype(at::kBFloat16).device(kGpu));
      auto w = at::rand({T, K}, at::TensorOptions().device(kGpu));
      auto packed = at::randn({N, d}, x.options());
      auto dy = at::randn({T, d}, x.options());
      auto flat_index = (layout.row_token * K + layout.row_slot);

      // Correctness first, against ATen formulations on the GPU.
      require(at::equal(moe::dispatch(x, layout), x.index_select(0, layout.row_token)), "dispatch");
      auto wr = w.reshape({-1}).index_select(0, flat_index).unsqueeze(1);
      auto y_ref = at::zeros({T, d}, at::TensorOptions().device(kGpu)).index_add_(0, layout.row_token,
                                                                                  packed.to(at::kFloat) * wr);
      require(max_abs_diff(moe::combine(packed, layout, w), y_ref) < 0.05 * y_ref.abs().max().item<double>(),
              "combine");

      // Each op timed three ways: the kernel alone (launched on preallocated buffers: the GB/s), the
      // public op (dispatch / combine, and their backward through autograd minus the forward), and the
      // ATen formulation.
      struct Op {
        const char* name;
        double bytes;
        std::function<void()> kernel_fn, op_fn, aten_fn;
        bool backward;
      };
      const double row = d * elem;
      auto px = x.detach().requires_grad_(true);
      auto pp = packed.detach().requires_grad_(true);
      auto pw = w.detach().requires_grad_(true);
      auto slot_row = layout.slot_row.contiguous();
      auto row_token = layout.row_token.contiguous();
      auto out_rows = at::empty({N, d}, x.options());
      auto out_tokens = at::empty({T, d}, x.options());
      auto out_weight = at::empty({T, K}, w.options());
      auto stream = at::cuda::getCurrentCUDAStream();
      auto launched = [](cudaError_t err) { require(err == cudaSuccess, cudaGetErrorString(err)); };
      const auto bf16 = moe::kernels::DType::kBFloat16;
      at::Tensor sink;
      std::vector<Op> ops{
          {"dispatch fwd", 2.0 * N * row,
           [&] {
             launched(moe::kernels::launch_gather_rows(x.data_ptr(), out_rows.data_ptr(), row_token.data_ptr<int64_t>(),
                                                       N, d * 2, stream));
           },
           [&] { sink = moe::dispatch(x, layout); }, [&] { sink = x.index_select(0, layout.row_token); }, false},
          {"dispatch bwd", (N + T) * row,
           [&] {
             launched(moe::kernels::launch_gather_sum(bf16, packed.data_ptr(), slot_row.data_ptr<int64_t>(), nullptr, T,
                                                      K, d, out_tokens.data_ptr(), stream));
           },
           [&] {
             auto g = moe::dispatch(px, layout);
             sink = torch::autograd::grad({g}, {px}, {packed})[0];
           },
           [&] { sink = at::zeros({T, d}, x.options()).index_add_(0, layout.row_token, packed); }, true},
          {"combine fwd", (N + T) * row,
           [&] {
             launched(moe::kernels::launch_gather_sum(bf16, packed.data_ptr(), slot_row.data_ptr<int64_t>(),
                                                      w.data_ptr<float>(), T, K, d, out_tokens.data_ptr(), stream));
           },
           [&] { sink = moe::combine(packed, layout, w); },
           [&] {
             sink = at::zeros({T, d}, x.options()).index_add_(0, layout.row_token, packed * wr.to(at::kBFloat16));
           },
           false},
          {"combine bwd", (2.0 * N + T) * row,
           [&] {
             launched(moe::kernels::launch_combine_backward(bf16, dy.data_ptr(), packed.data_ptr(),
                                                            slot_row.data_ptr<int64_t>(), w.data_ptr<float>(), T, K, d,
                                                            out_rows.data_ptr(), out_weight.data_ptr<float>(), stream));
           },
           [&] {
             auto y = moe::combine(pp, layout, pw);
             auto g = torch::autograd::grad({y}, {pp, pw}, {dy});
             sink = g[0];
           },
           [&] {
             auto gp = dy.index_select(0, layout.row_token) * wr.to(at::kBFloat16);
             auto gw = (dy.index_select(0, layout.row_token) * packed).sum(1, false, at::kFloat);
             sink = gp;
             (void)gw;
           },
           true},
      };
      const double fwd_dispatch = median_ms(ops[0].op_fn), fwd_combine = median_ms(ops[2].op_fn);
      for (auto& op : ops) {
        const double ms = median_ms(op.kernel_fn);
        double via_op = median_ms(op.op_fn);
        if (op.backward) via_op -= std::string(op.name) == "dispatch bwd" ? fwd_dispatch : fwd_combine;
        const double aten = median_ms(op.aten_fn);
        const double gbs = op.bytes / (ms * 1e6);
        std::printf("| %lld | %lld | %lld | %s | %.3f | %.0f | %.0f%% | %.3f | %.3f | %.2fx |\n",
                    static_cast<long long>(T), static_cast<long long>(E), static_cast<long long>(K), op.name, ms, gbs,
                    100.0 * gbs / ceil.copy_gbs, via_op, aten, aten / via_op);
      }
      std::fflush(stdout);
    }
  }
}

// ---- 3. the layer against PyTorch-native formulations ----------------------------------------------
struct Experts {
  at::Tensor w1, w3, w2;  // [E, d, h], [E, d, h], [E, h, d] (SwiGLU, no biases: Mixtral)
};

at::Tensor swiglu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w3, const at::Tensor& w2) {
  return at::matmul(at::silu(at::matmul(x, w1)) * at::matmul(x, w3), w2);
}

// fairseq / DeepSpeed top-k gating: one-hot masks, positions by cumsum, [T, E, C] dispatch and combine
// tensors, einsum in and out, and a batched expert FFN over [E, C, d].
at::Tensor einsum_layer(const at::Tensor& x, const at::Tensor& router_w, const Experts& ex, int64_t K,
                        int64_t capacity) {
  const int64_t T = x.size(0), E = router_w.size(0);
  auto probs = at::softmax(at::matmul(x.to(at::kFloat), router_w.to(at::kFloat).t()), -1);
  auto topk = probs.topk(K, -1);
  auto gates = std::get<0>(topk);
  gates = gates / gates.sum(-1, true);
  auto idx = std::get<1>(topk);
  at::Tensor combine_w = at::zeros({T, E, capacity}, probs.options());
  at::Tensor offset = at::zeros({1, E}, probs.options().dtype(at::kLong));
  for (int64_t k = 0; k < K; ++k) {
    auto mask = at::one_hot(idx.select(1, k), E);  // [T, E]
    auto loc = at::cumsum(mask, 0) - 1 + offset;    // position in the expert's buffer
    offset = offset + mask.sum(0, true);
    auto keep = mask * loc.lt(capacity).to(at::kLong);
    auto loc_s = (loc * keep).sum(1);  // [T]
    auto loc_oh = at::one_hot(loc_s, capacity).to(probs.scalar_type());  // [T, C]
    combine_w = combine_w + (gates.select(1, k).unsqueeze(1) * keep.to(probs.scalar_type())).unsqueeze(2) *
                                loc_oh.unsqueeze(1);
  }
  auto dispatch_mask = combine_w.gt(0).to(x.scalar_type());
  auto dispatched = at::einsum("sec,sm->ecm", {dispatch_mask, x});  // [E, C, d]
  auto out = at::bmm(at::silu(at::bmm(dispatched, ex.w1)) * at::bmm(dispatched, ex.w3), ex.w2);
  return at::einsum("sec,ecm->sm", {combine_w.to(x.scalar_type()), out});
}

// Sort by expert, index_select in, one FFN per expert segment, index_add_ out (no capacity limit).
at::Tensor index_layer(const at::Tensor& x, const at::Tensor& router_w, const Experts& ex, int64_t K) {
  const int64_t E = router_w.size(0);
  auto probs = at::softmax(at::matmul(x.to(at::kFloat), router_w.to(at::kFloat).t()), -1);
  auto topk = probs.topk(K, -1);
  auto gates = std::get<0>(topk);
  gates = gates / gates.sum(-1, true);
  auto flat = std::get<1>(topk).reshape({-1});
  auto order = std::get<1>(flat.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
  auto tokens = at::floor_divide(order, K);
  auto counts = at::bincount(flat, {}, E).cpu();
  std::vector<int64_t> sizes(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + E);
  auto xs = x.index_select(0, tokens);
  auto segments = xs.split_with_sizes(sizes, 0);
  std::vector<at::Tensor> outs;
  for (int64_t e = 0; e < E; ++e) outs.push_back(swiglu(segments[e], ex.w1[e], ex.w3[e], ex.w2[e]));
  auto out = at::cat(outs, 0) * gates.reshape({-1}).index_select(0, order).unsqueeze(1).to(x.scalar_type());
  return at::zeros_like(x).index_add(0, tokens, out);
}

struct LayerRig {
  moe::MoELayer layer{nullptr};
  Experts ex;
  at::Tensor router_w;
};

// The layer (SwiGLU experts without biases, greedy top-k) and the same weights for the baselines.
LayerRig make_rig(at::Device dev, c10::ScalarType dtype, int64_t d, int64_t h, int64_t E, int64_t K, bool drop) {
  torch::manual_seed(0);
  moe::MoELayerOptions o(d, E, h, K);
  o.router_options.second_expert_policy = moe::SecondExpertPolicy::kGreedy;
  o.router_options.capacity.capacity_factor = 1.25;
  o.router_options.capacity.drop_tokens = drop;
  o.experts.ffn.activation = moe::Activation::kSwiGLU;
  o.experts.ffn.fc1_bias = false;
  o.experts.ffn.fc2_bias = false;
  LayerRig rig;
  rig.layer = moe::MoELayer(o);
  rig.layer->to(dev, dtype);
  std::vector<at::Tensor> w1, w3, w2;
  for (int64_t e = 0; e < E; ++e) {
    auto f = rig.layer->experts->expert(e);
    w1.push_back(f->w1);
    w3.push_back(f->w3);
    w2.push_back(f->w2);
  }
  rig.ex.w1 = at::stack(w1).detach().requires_grad_(true);
  rig.ex.w3 = at::stack(w3).detach().requires_grad_(true);
  rig.ex.w2 = at::stack(w2).detach().requires_grad_(true);
  rig.router_w = rig.layer->router->named_parameters()["weight"].detach().clone().requires_grad_(true);
  return rig;
}

// Correctness before timing: without drops the three formulations compute the same function.
void check_layer(at::Device dev, c10::ScalarType dtype, int64_t d, int64_t h, int64_t E, int64_t K) {
  const int64_t T = 256;
  auto rig = make_rig(dev, dtype, d, h, E, K, /*drop=*/false);
  at::NoGradGuard no_grad;
  auto x = at::randn({T, d}, at::TensorOptions().dtype(dtype).device(dev));
  auto y = rig.layer->forward(x).output.to(at::kFloat);
  auto y_einsum = einsum_layer(x, rig.router_w, rig.ex, K, T).to(at::kFloat);
  auto y_index = index_layer(x, rig.router_w, rig.ex, K).to(at::kFloat);
  const double scale = y.abs().max().item<double>();
  const double tol = (dtype == at::kFloat ? 1e-4 : 3e-2) * scale;
  const double e1 = max_abs_diff(y, y_einsum), e2 = max_abs_diff(y, y_index);
  std::printf("layer check d=%lld E=%lld k=%lld %s: max |moe - einsum| = %.3g, |moe - index| = %.3g (max |y| %.3g)\n",
              static_cast<long long>(d), static_cast<long long>(E), static_cast<long long>(K),
              c10::toString(dtype), e1, e2, scale);
  require(scale > 0 && e1 <= tol && e2 <= tol, "the MoE layer and the baselines disagree");
}

void bench_layer(const Ceilings&, int64_t T, int64_t d, int64_t h, int64_t E, int64_t K) {
  check_layer(kGpu, at::kBFloat16, d, h, E, K);
  auto rig = make_rig(kGpu, at::kBFloat16, d, h, E, K, /*drop=*/true);
  auto opts = at::TensorOptions().dtype(at::kBFloat16).device(kGpu);
  auto x = at::randn({T, d}, opts).requires_grad_(true);
  auto g = at::randn({T, d}, opts);
  const int64_t capacity = static_cast<int64_t>(1.25 * T * K / E);
  auto moe_step = [&] {
    auto y = rig.layer->forward(x).output;
    (y * g).sum().backward();
  };
  auto einsum_step = [&] { (einsum_layer(x, rig.router_w, rig.ex, K, capacity) * g).sum().backward(); };
  auto index_step = [&] { (index_layer(x, rig.router_w, rig.ex, K) * g).sum().backward(); };
  const double t_moe = median_ms(moe_step, 2, 7);
  const double t_einsum = median_ms(einsum_step, 2, 7);
  const double t_index = median_ms(index_step, 2, 7);
  const double flops = 3.0 * 2.0 * T * K * d * h * 3;  // fwd + 2x bwd, three matrices
  std::printf("| %lld | %lld | %lld | %lld | %lld | %.2f | %.2f | %.2f | %.2fx | %.2fx | %.0f |\n",
              static_cast<long long>(T), static_cast<long long>(d), static_cast<long long>(h),
              static_cast<long long>(E), static_cast<long long>(K), t_moe, t_einsum, t_index, t_einsum / t_moe,
              t_index / t_moe, flops / (t_moe * 1e9));
  std::fflush(stdout);
}

// ---- 4. expert GEMMs ---------------------------------------------------------------------------------
void bench_experts(const Ceilings& ceil, const char* name, int64_t T, int64_t d, int64_t h, int64_t E,
                   moe::Activation act, const at::Tensor& ids) {
  auto layout = moe::build_layout(ids, E, -1);
  const int64_t N = layout.num_rows();
  for (auto backend : {moe::GroupedGemmBackend::kGroupedMM, moe::GroupedGemmBackend::kPerGroup}) {
    torch::manual_seed(0);
    moe::ExpertBankOptions bo;
    bo.ffn.d_model = d;
    bo.ffn.hidden = h;
    bo.ffn.activation = act;
    bo.ffn.fc2_bias = false;
    if (act == moe::Activation::kSwiGLU) bo.ffn.fc1_bias = false;
    bo.num_experts = E;
    bo.gemm = backend;
    moe::ExpertBank bank(bo);
    bank->to(kGpu, at::kBFloat16);
    auto x = at::randn({N, d}, at::TensorOptions().dtype(at::kBFloat16).device(kGpu)).requires_grad_(true);
    auto g = at::randn({N, d}, x.options());
    const int64_t before = moe::grouped_gemm_fallbacks();
    const double ms = median_ms([&] { (bank->forward(x, layout.tokens_per_expert) * g).sum().backward(); }, 2, 7);
    const int64_t mats = act == moe::Activation::kSwiGLU ? 3 : 2;
    const double flops = 3.0 * 2.0 * N * d * h * mats;
    const double tflops = flops / (ms * 1e9);
    std::printf("| %s | %lld | %lld | %lld | %lld | %.2f | %s%s | %.2f | %.0f | %.0f%% |\n", name,
                static_cast<long long>(T), static_cast<long long>(d), static_cast<long long>(h),
                static_cast<long long>(E), static_cast<double>(N) / T, moe::to_string(backend).c_str(),
                moe::grouped_gemm_fallbacks() > before ? " (fell back)" : "", ms, tflops,
                100.0 * tflops / ceil.matmul_tflops);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe GPU benchmark: dispatch/combine kernels, the MoE layer and expert GEMMs (bf16)"};
  bool quick = false, cpu_check = false;
  std::string sections = "permute,layer,experts";
  app.add_option("--sections", sections, "comma-separated: permute, layer, experts (the ceilings always run)");
  app.add_flag("--quick", quick, "small sizes only (a smoke run)");
  app.add_flag("--cpu-check", cpu_check, "only check the layer against the baselines on the CPU (fp32) and exit");
  CLI11_PARSE(app, argc, argv);
  try {
    if (cpu_check) {
      check_layer(at::kCPU, at::kFloat, 64, 96, 8, 2);
      check_layer(at::kCPU, at::kFloat, 32, 16, 16, 8);
      return 0;
    }
    if (!torch::cuda::is_available()) {
      std::fprintf(stderr, "bench_cuda_moe: no CUDA device\n");
      return 2;
    }
    const auto* prop = at::cuda::getCurrentDeviceProperties();
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    std::printf("GPU: %s (sm_%d%d, %d SMs, %.0f GiB), CUDA driver %d.%d, runtime %d.%d, LibTorch %s\n", prop->name,
                prop->major, prop->minor, prop->multiProcessorCount, prop->totalGlobalMem / double(1 << 30),
                driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10, TORCH_VERSION);
    const Ceilings ceil = measure_ceilings();
    std::printf("\n### Ceilings measured in this run\n\n| ceiling | value |\n|---|---:|\n");
    std::printf("| device-to-device copy (read + write) | %.0f GB/s |\n| bf16 matmul 8192^3 | %.0f TFLOP/s |\n",
                ceil.copy_gbs, ceil.matmul_tflops);
    std::fflush(stdout);

    // Each section reports its own failure and the run goes on with the next.
    auto section = [&](const char* name, const std::function<void()>& fn) {
      if (sections.find(name) == std::string::npos) return;
      try {
        fn();
      } catch (const std::exception& e) {
        std::printf("\n%s: FAILED: %s\n", name, std::string(e.what()).substr(0, 400).c_str());
        std::fflush(stdout);
      }
    };
    section("permute", [&] {
      bench_permute(ceil, quick ? std::vector<int64_t>{16384} : std::vector<int64_t>{16384, 65536});
    });
    section("layer", [&] {
      std::printf("\n### MoE layer forward + backward (bf16, SwiGLU experts, top-k router, capacity 1.25)\n\n");
      std::printf("| T | d | h | E | k | moe ms | einsum ms | index ms | vs einsum | vs index | moe TFLOP/s |\n");
      std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
      bench_layer(ceil, quick ? 2048 : 8192, 4096, 14336, 8, 2);
      bench_layer(ceil, quick ? 2048 : 8192, 768, 384, 64, 8);
    });
    section("experts", [&] {
      std::printf("\n### Expert GEMMs, ExpertBank forward + backward (bf16)\n\n");
      std::printf("| shape | T | d | h | E | rows/token | backend | ms | TFLOP/s | of matmul |\n");
      std::printf("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|\n");
      const int64_t T = quick ? 4096 : 16384;
      auto mixtral_ids = moe::softmax_topk(at::randn({T, 8}, at::TensorOptions().device(kGpu)), 2).index;
      bench_experts(ceil, "Mixtral-like", T, 4096, 14336, 8, moe::Activation::kSwiGLU, mixtral_ids);
      // XMoE routing: threshold 0.9 over 64 experts with peaked router logits.
      auto xmoe_ids =
          moe::softmax_threshold(at::randn({T, 64}, at::TensorOptions().device(kGpu)) * 3.0, 0.9).index;
      bench_experts(ceil, "XMoE-like", T, 768, 384, 64, moe::Activation::kRelu, xmoe_ids);
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_moe: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
