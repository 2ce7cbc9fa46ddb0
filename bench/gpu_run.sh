#!/usr/bin/env bash
# One call on a GPU machine: build (unless a prebuilt CUDA-tier build is given), run the *_CUDA tests,
# the kernel benchmark, and with --data the trainer's throughput beside the plain-PyTorch reference
# (bench/compare-pytorch on the configs/gpu-multi30k-* presets: 8192 and 65536 tokens per batch,
# GShard and dense); logs and markdown go to $OUT (or ./gpu-out).
#
#   bench/gpu_run.sh                       configure + build in build-gpu against python3's torch, then run
#   bench/gpu_run.sh --prebuilt build-cuda  run binaries built elsewhere against the same torch version
#                    [--libs DIR]          extra shared libraries (e.g. Debian's spdlog/fmt/sentencepiece)
#                    [--data DIR]          Multi30k (train/valid/test.{en,de,fr}), relative to the checkout:
#                                          the training *_CUDA tests use it, and the throughput runs
#                    [--quick]             fewer repetitions and updates
#
# The benchmark appends nothing itself: copy $OUT/bench.md into bench/RESULTS.md under a dated heading.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/gpu-out}"
mkdir -p "$OUT"
PREBUILT=""
LIBS=""
QUICK=""
DATA=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prebuilt) PREBUILT="$2"; shift 2 ;;
    --libs) LIBS="$2"; shift 2 ;;
    --quick) QUICK="--quick"; shift ;;
    --data) DATA="$2"; shift 2 ;;
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
  ninja -C "$BUILD" moe_cuda_tests bench_cuda_moe bench_train_throughput >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
else
  BUILD="$ROOT/$PREBUILT"
fi

# LibTorch and its CUDA libraries from python3's torch; the carried libraries first.
LD="$TORCH_PKG/lib"
for d in "$SITE"/nvidia/*/lib "$SITE"/nvidia/cu13/lib; do [ -d "$d" ] && LD="$LD:$d"; done
[ -n "$LIBS" ] && LD="$ROOT/$LIBS:$LD"
export LD_LIBRARY_PATH="$LD:$BUILD/lib:${LD_LIBRARY_PATH:-}"
ldd "$BUILD/bin/moe_cuda_tests" | grep "not found" && { echo "missing shared libraries"; exit 1; }

[ -n "$DATA" ] && export MOE_CUDA_TEST_DATA="$ROOT/$DATA"
echo "== *_CUDA tests"
"$BUILD/bin/moe_cuda_tests" --gtest_brief=1 2>&1 | tee "$OUT/tests.log" | tail -25
tests_rc=${PIPESTATUS[0]}

echo "== benchmark"
"$BUILD/bin/bench_cuda_moe" $QUICK 2>&1 | tee "$OUT/bench.md"
bench_rc=${PIPESTATUS[0]}
train_rc=0
if [ -n "$DATA" ]; then
  echo "== training throughput: moe-train beside plain PyTorch"
  UPDATES=30
  [ -n "$QUICK" ] && UPDATES=10
  for preset in gpu-multi30k-gshard gpu-multi30k-dense gpu-multi30k-gshard-64k gpu-multi30k-dense-64k; do
    BIN="$BUILD/bin" PYTHON=python3 OUT="$OUT/train-$preset" "$ROOT/bench/compare-pytorch" \
      --config "$ROOT/configs/$preset.toml" --data.root "$ROOT/$DATA" --data.cache_dir "$OUT/cache" \
      --warmup 10 --updates "$UPDATES" 2>"$OUT/train-$preset.log" | tee "$OUT/train-$preset.md" || train_rc=1
  done
fi
echo "== tests rc=$tests_rc bench rc=$bench_rc train rc=$train_rc"
exit $(( tests_rc != 0 || bench_rc != 0 || train_rc != 0 ))
