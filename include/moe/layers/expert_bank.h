// Position-wise feed-forward networks: the FFN used as one expert (and as the dense baseline), and
// the ExpertBank that holds E of them and runs each over its contiguous segment of packed rows.
//
// Parameters are named by global expert id ("3.w1" inside the bank, "experts.3.w1" in an MoELayer),
// so checkpoints do not depend on how experts are sharded across ranks. Weight layout per expert:
// w1 [d, h], b1 [h], w2 [h, d], b2 [d]; the gated activation (SwiGLU) adds w3 [d, h], b3 [h].
//
// Stacked storage: the bank keeps each kind of matrix of its experts in one tensor ([E_local, d, h]
// for w1, [E_local, h] for b1, ...), and every expert's parameter is a slice of it (the parameters
// share the storage, they are still separate leaves with their own names and gradients). The
// grouped path hands that storage to the grouped GEMM as it is: no forward copies the weights into a
// stack. The optimizer's in-place updates and a checkpoint's copy_ land in the storage too. Anything
// that gives a parameter new storage (Module::to, set_data) is noticed at the next forward, which
// rebuilds the stacks once (counted by restacks()). An expert without rows in a call gets no
// gradient from it, as on the per-expert path. Autograd's saved-tensor check does not see an
// in-place change of a parameter between a forward and its backward (the graph holds the stack,
// whose version counter is not the parameters'); nothing in moe makes one.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "moe/ops/grouped_gemm.h"

#include <cstdint>
#include <string>
#include <vector>

namespace moe {

enum class Activation {
  kRelu,    ///< relu(x W1 + b1) W2 + b2 (fairseq MT, SMoE, THOR)
  kGelu,    ///< gelu (erf form) (Megatron LM, XMoE LM)
  kSwiGLU,  ///< (silu(x W1 + b1) ⊙ (x W3 + b3)) W2 + b2 (Shazeer 2020, "GLU Variants Improve Transformer")
};
/// Parses "relu", "gelu", "swiglu"; throws moe::Error listing the allowed names otherwise.
Activation parse_activation(const std::string& name);
std::string to_string(Activation activation);

enum class ExpertInit {
  kIndependent,  ///< every expert drawn independently (SMoE, THOR, GShard)
  kReplicated,   ///< every expert a copy of the first (XMoE's official code deep-copies one expert)
};
ExpertInit parse_expert_init(const std::string& name);
std::string to_string(ExpertInit init);

struct FFNOptions {
  int64_t d_model = 0;  ///< input and output width d (>= 1)
  int64_t hidden = 0;   ///< inner width h (>= 1); XMoE small experts use d_ff / 8 and the like
  Activation activation = Activation::kRelu;
  /// Dropout on the activation, inside the FFN (fairseq activation_dropout). In [0, 1).
  double activation_dropout = 0.0;
  /// Dropout on the FFN output, inside the expert and so before the gate weighting (SMoE applies the
  /// layer's dropout there). In [0, 1).
  double output_dropout = 0.0;
  bool fc1_bias = true;  ///< b1 (and b3 for SwiGLU)
  bool fc2_bias = true;  ///< b2; false reproduces the XMoE LM code, which never applies it

  void validate(const std::string& owner = "FFNOptions") const;
};

/// One feed-forward network. forward: x [N, d] floating -> [N, d].
class FFNImpl : public torch::nn::Module {
 public:
  explicit FFNImpl(const FFNOptions& options);
  void reset_parameters();
  at::Tensor forward(const at::Tensor& x);

  FFNOptions options;
  at::Tensor w1, b1, w2, b2, w3, b3;  ///< undefined when not used (biases off, non-gated activation)
};
TORCH_MODULE(FFN);

struct ExpertBankOptions {
  FFNOptions ffn;           ///< the shape and behaviour of each expert
  int64_t num_experts = 0;  ///< E, experts in the whole layer (>= 1)
  /// Global id of this bank's first expert (expert parallelism). A shard draws every expert's initial
  /// values in global-id order and keeps its own: the same weights as the full bank under one seed.
  int64_t first_expert = 0;
  int64_t num_local_experts = -1;  ///< experts held here; -1 = all from first_expert to E-1
  ExpertInit init = ExpertInit::kIndependent;
  /// How the experts run. CUDA: always the grouped path over the stacked weights, one grouped GEMM
  /// per matrix over all segments (kAuto picks at::_grouped_mm for bf16 on sm_90, else one GEMM per
  /// group). CPU: kAuto runs one FFN per expert; kGroupedMM or kPerGroup run the grouped path there
  /// too (how the CPU tests check it).
  GroupedGemmBackend gemm = GroupedGemmBackend::kAuto;

  void validate(const std::string& owner = "ExpertBankOptions") const;
  int64_t local_count() const { return num_local_experts < 0 ? num_experts - first_expert : num_local_experts; }
};

/// The experts of one MoE layer.
class ExpertBankImpl : public torch::nn::Module {
 public:
  explicit ExpertBankImpl(const ExpertBankOptions& options);
  void reset_parameters();

  /// packed: [N, d] floating, rows grouped by local expert in order (DispatchLayout packing).
  /// rows_per_expert: [num_local_experts] int64 on the CPU, summing to N.
  /// Returns [N, d]: each segment through its expert, in packed's dtype (under autocast on packed's
  /// device, the grouped path computes and returns in the autocast dtype, as at::linear does).
  /// Grouped path (CUDA; CPU with an explicit gemm backend): every matrix applied to all segments by
  /// grouped_linear (moe/ops/grouped_gemm.h) straight from the stacked storage. CPU default: one
  /// matmul chain per non-empty segment.
  at::Tensor forward(const at::Tensor& packed, const at::Tensor& rows_per_expert);

  /// The expert with global id `global_id` (must be held by this bank).
  FFN expert(int64_t global_id) const;

  /// The stacked storage of one kind of parameter ("w1", "b1", "w2", "b2", "w3", "b3"):
  /// [num_local_experts, ...] with the parameter's shape after the first dimension, the parameters'
  /// dtype and device (rebuilt first if a parameter has new storage), no gradient. Throws for a kind
  /// this FFN does not have.
  at::Tensor stacked(const std::string& kind);
  /// Whether every expert parameter is still the slice of its stack.
  bool stacks_intact() const;
  /// How often this bank has built its stacks (1 after construction; +1 each time a forward found a
  /// parameter with new storage, e.g. after Module::to).
  int64_t restacks() const { return restacks_; }

  ExpertBankOptions options;

 private:
  struct Stack {
    at::Tensor FFNImpl::*member;  ///< which parameter of each expert
    std::string kind;
    at::Tensor storage;           ///< [E_local, ...], no gradient
  };
  void restack();
  at::Tensor forward_grouped(const at::Tensor& packed, const std::vector<int64_t>& rows);
  std::vector<FFN> experts_;
  FFN scratch_{nullptr};  ///< a shard's stand-in for the experts it does not hold (initial draws only)
  std::vector<Stack> stacks_;
  int64_t restacks_ = 0;
};
TORCH_MODULE(ExpertBank);

}  // namespace moe
