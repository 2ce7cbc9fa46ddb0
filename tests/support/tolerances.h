// Per-dtype tolerances and a closeness assertion that reports the worst element. One table for the
// whole suite (TransformerEngine's _get_tolerances, CTranslate2's FloatType.error).
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <sstream>

namespace moe::testing {

struct Tolerance {
  double atol;
  double rtol;
};

inline Tolerance tolerance_for(c10::ScalarType dtype) {
  switch (dtype) {
    case at::kDouble: return {1e-10, 1e-8};
    case at::kFloat: return {1e-5, 1e-5};
    case at::kBFloat16: return {1e-2, 1.6e-2};
    case at::kHalf: return {1e-3, 1e-3};
    default: return {0, 0};
  }
}

/// |actual - expected| <= atol + rtol·|expected| everywhere, compared in float64; the failure
/// message names the worst element. Also fails when expected is all zeros and require_nonzero is set
/// (a reference that computes nothing proves nothing; CUTLASS testbeds check the norm too).
inline ::testing::AssertionResult all_close(const at::Tensor& actual, const at::Tensor& expected, Tolerance tol,
                                            bool require_nonzero = true) {
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure() << "shape " << actual.sizes() << " != expected " << expected.sizes();
  }
  auto a = actual.detach().to(at::kCPU, at::kDouble);
  auto e = expected.detach().to(at::kCPU, at::kDouble);
  if (require_nonzero && e.numel() > 0 && e.abs().max().item<double>() == 0) {
    return ::testing::AssertionFailure() << "the expected tensor is all zeros";
  }
  if (e.numel() == 0) return ::testing::AssertionSuccess();
  auto excess = (a - e).abs() - (tol.atol + tol.rtol * e.abs());
  if (!at::isfinite(a).all().item<bool>()) return ::testing::AssertionFailure() << "actual has NaN/Inf";
  const int64_t worst = excess.reshape({-1}).argmax().item<int64_t>();
  const double over = excess.reshape({-1})[worst].item<double>();
  if (over <= 0) return ::testing::AssertionSuccess();
  std::ostringstream msg;
  msg << "element " << worst << ": actual " << a.reshape({-1})[worst].item<double>() << " vs expected "
      << e.reshape({-1})[worst].item<double>() << " (atol " << tol.atol << ", rtol " << tol.rtol
      << "); max abs diff " << (a - e).abs().max().item<double>();
  return ::testing::AssertionFailure() << msg.str();
}

/// Bitwise equality (determinism checks).
inline ::testing::AssertionResult bitwise_equal(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) {
    return ::testing::AssertionFailure() << "shape/dtype differ";
  }
  if (at::equal(a.detach(), b.detach())) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "tensors differ; max abs diff "
                                       << (a.detach().to(at::kDouble) - b.detach().to(at::kDouble)).abs().max().item<double>();
}

}  // namespace moe::testing
