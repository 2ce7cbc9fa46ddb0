#!/usr/bin/env bash
# One call on a GPU machine: build (unless a prebuilt CUDA-tier build is given), run the *_CUDA tests,
# then the GPU benchmark; logs and the benchmark's markdown go to $OUT (or ./gpu-out).
#
#   bench/gpu_run.sh                       configure + build in build-gpu against python3's torch, then run
#   bench/gpu_run.sh --prebuilt build-cuda  run binaries built elsewhere against the same torch version
#                    [--libs DIR]          extra shared libraries (e.g. Debian's spdlog/fmt/sentencepiece)
#
# The benchmark appends nothing itself: copy $OUT/bench.md into bench/RESULTS.md under a dated heading.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/gpu-out}"
mkdir -p "$OUT"
PREBUILT=""
LIBS=""
QUICK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prebuilt) PREBUILT="$2"; shift 2 ;;
    --libs) LIBS="$2"; shift 2 ;;
    --quick) QUICK="--quick"; shift ;;
    *) echo "gpu_run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

TORCH_PKG="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')"
SITE="$(dirname "$TORCH_PKG")"
echo "== $(date -u +%FT%TZ) torch $(python3 -c 'import torch;print(torch.__version__)') at $TORCH_PKG"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"

if [ -z "$PREBUILT" ]; then
  BUILD="$ROOT/build-gpu"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_ENABLE_CUDA=ON \
        -DMOE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')" \
        >"$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
  ninja -C "$BUILD" moe_cuda_tests bench_cuda_moe >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
else
  BUILD="$ROOT/$PREBUILT"
fi

# LibTorch and its CUDA libraries from python3's torch; the carried libraries first.
LD="$TORCH_PKG/lib"
for d in "$SITE"/nvidia/*/lib "$SITE"/nvidia/cu13/lib; do [ -d "$d" ] && LD="$LD:$d"; done
[ -n "$LIBS" ] && LD="$ROOT/$LIBS:$LD"
export LD_LIBRARY_PATH="$LD:$BUILD/lib:${LD_LIBRARY_PATH:-}"
ldd "$BUILD/bin/moe_cuda_tests" | grep "not found" && { echo "missing shared libraries"; exit 1; }

echo "== *_CUDA tests"
"$BUILD/bin/moe_cuda_tests" --gtest_brief=1 2>&1 | tee "$OUT/tests.log" | tail -25
tests_rc=${PIPESTATUS[0]}

echo "== benchmark"
"$BUILD/bin/bench_cuda_moe" $QUICK 2>&1 | tee "$OUT/bench.md"
bench_rc=${PIPESTATUS[0]}
echo "== tests rc=$tests_rc bench rc=$bench_rc"
exit $(( tests_rc != 0 || bench_rc != 0 ))
