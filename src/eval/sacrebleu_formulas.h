// Private to src/eval: sacreBLEU's BLEU and chrF score formulas (sacrebleu/metrics/bleu.py
// BLEU.compute_bleu, chrf.py CHRF._compute_f_score), written once over PyNum, a number that follows
// Python's and numpy 2's arithmetic. sacreBLEU runs these formulas on Python ints (a corpus score:
// every step in double precision) and, inside its bootstrap resampling, on numpy float32 statistics,
// where NEP 50 makes every operation with a float32 operand a float32 operation (a Python float or int
// operand is converted to float32 first). Reproducing that is what makes moe's bootstrap means,
// intervals and p-values equal to sacreBLEU's (moe/eval/significance.h).
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "moe/eval/sacrebleu.h"

namespace moe::sacrebleu_detail {

/// A Python float (a double) or a numpy float32.
struct PyNum {
  double value = 0;
  bool float32 = false;
  static PyNum py(double v) { return {v, false}; }
  static PyNum f32(float v) { return {static_cast<double>(v), true}; }
};

#define MOE_PYNUM_OPERATOR(OP)                                                                                 \
  inline PyNum operator OP(PyNum a, PyNum b) {                                                                 \
    if (a.float32 || b.float32) return PyNum::f32(static_cast<float>(a.value) OP static_cast<float>(b.value)); \
    return PyNum::py(a.value OP b.value);                                                                      \
  }
MOE_PYNUM_OPERATOR(+)
MOE_PYNUM_OPERATOR(-)
MOE_PYNUM_OPERATOR(*)
MOE_PYNUM_OPERATOR(/)
#undef MOE_PYNUM_OPERATOR

struct BleuFormula {
  double score = 0;  ///< a Python float in both arithmetics (math.exp)
  std::array<double, 4> precisions{};
  double bp = 1;
};

/// BLEU.compute_bleu over (summed) statistics: correct[n], total[n] as Python ints or float32.
BleuFormula bleu_formula(std::array<PyNum, 4> correct, std::array<PyNum, 4> total, int64_t sys_len, int64_t ref_len,
                         const BleuOptions& options);

/// CHRF._compute_f_score over [hyp, ref, match] per order (3·orders values).
PyNum chrf_formula(const PyNum* stats, size_t orders, const ChrFOptions& options);

}  // namespace moe::sacrebleu_detail
