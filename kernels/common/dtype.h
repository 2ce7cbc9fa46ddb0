// Element types the kernels accept, as a plain enum so that kernels/ stays free of LibTorch. The glue
// in src/ops maps at::ScalarType onto it.
#pragma once
#include <cstddef>

namespace moe::kernels {

enum class DType : int {
  kFloat32 = 0,
  kBFloat16 = 1,
  kFloat16 = 2,
};

inline std::size_t dtype_size(DType t) { return t == DType::kFloat32 ? 4 : 2; }

}  // namespace moe::kernels
