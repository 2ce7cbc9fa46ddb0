#!/usr/bin/env bash
# Shared set-up for ./scripts/demo and ./scripts/test: Debian packages, the project-local
# virtualenv with the pinned LibTorch wheel, configure and build. Idempotent: every step checks
# first and does nothing when its result is already there.
set -euo pipefail

MOE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOE_VENV="${MOE_VENV:-$MOE_ROOT/.venv}"
MOE_BUILD_DIR="${MOE_BUILD_DIR:-$MOE_ROOT/build}"
MOE_BUILD_TYPE="${MOE_BUILD_TYPE:-Release}"
# Pinned: 2.11.0 matches the GPU machine's torch. The wheel is a CUDA 13.0 build; the CPU tier needs
# only its CUDA runtime and CUPTI shared objects (libtorch_cpu.so links them), not cuDNN/cuBLAS.
TORCH_VERSION="2.11.0"
TORCH_CPU_TIER_DEPS=("nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cupti==13.0.85")
APT_PACKAGES=(build-essential cmake ninja-build ccache git python3 python3-venv pkg-config
              libcli11-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev googletest
              libsentencepiece-dev sentencepiece gettext libgloo-dev
              libtomlplusplus-dev nlohmann-json3-dev)
# Only ./scripts/test needs these: the run report is rendered in a real browser (headless Chromium).
TEST_APT_PACKAGES=(chromium)

# The kernels tier needs nvcc; the CUDA toolkit's standard location is often not on PATH.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="$PATH:/usr/local/cuda/bin"
fi

log() { printf '[moe setup %(%H:%M:%S)T] %s\n' -1 "$*"; }

step_timer_start() { STEP_T0=$(date +%s); }
step_timer_end() { log "$1 took $(( $(date +%s) - STEP_T0 )) s"; }

ensure_apt_packages() {
  local missing=() wanted=("${APT_PACKAGES[@]}")
  if [ "${MOE_WITH_TEST_PACKAGES:-0}" = 1 ]; then wanted+=("${TEST_APT_PACKAGES[@]}"); fi
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "Debian packages: all present"; return; fi
  log "Debian packages: installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

find_python() {
  for py in python3.12 python3.11 python3.10 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import venv' 2>/dev/null; then echo "$py"; return; fi
  done
  echo "no python3 with the venv module found; install python3-venv" >&2
  return 1
}

ensure_venv() {
  if [ ! -x "$MOE_VENV/bin/python" ]; then
    log "virtualenv: creating $MOE_VENV"
    "$(find_python)" -m venv "$MOE_VENV"
  fi
  local have
  have=$("$MOE_VENV/bin/python" - <<'PY' 2>/dev/null || true
import importlib.util, os, re
spec = importlib.util.find_spec("torch")
if spec:
    src = open(os.path.join(os.path.dirname(spec.origin), "version.py")).read()
    print(re.search(r"__version__ = '([^']+)'", src).group(1))
PY
)
  if [[ "$have" != "$TORCH_VERSION"* ]]; then
    log "virtualenv: installing torch==$TORCH_VERSION (about 530 MB download, 1.3 GB on disk)"
    # --no-deps: the CPU tier links libtorch_cpu and libc10 only, so the multi-GB cuDNN/cuBLAS/NCCL
    # wheels are not needed; the two CUDA runtime wheels below satisfy libtorch_cpu's links.
    "$MOE_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "torch==$TORCH_VERSION"
  fi
  if [ ! -e "$(torch_dir)/../nvidia/cu13/lib/libcudart.so.13" ] || [ ! -e "$(torch_dir)/../nvidia/cu13/lib/libcupti.so.13" ]; then
    log "virtualenv: installing ${TORCH_CPU_TIER_DEPS[*]}"
    "$MOE_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "${TORCH_CPU_TIER_DEPS[@]}"
  fi
  log "virtualenv: torch $TORCH_VERSION ready in $MOE_VENV"
}

# The torch package folder, found without importing torch (import would load the CUDA libraries).
torch_dir() {
  "$MOE_VENV/bin/python" -c 'import importlib.util,os;print(os.path.dirname(importlib.util.find_spec("torch").origin))'
}

torch_cmake_prefix() { echo "$(torch_dir)/share/cmake"; }

configure_and_build() {
  local extra=("$@")
  if [ ! -f "$MOE_BUILD_DIR/build.ninja" ]; then
    log "configure: $MOE_BUILD_DIR ($MOE_BUILD_TYPE)"
    cmake -S "$MOE_ROOT" -B "$MOE_BUILD_DIR" -G Ninja \
      -DCMAKE_BUILD_TYPE="$MOE_BUILD_TYPE" \
      -DCMAKE_PREFIX_PATH="$(torch_cmake_prefix)" \
      -DCMAKE_INSTALL_PREFIX="$MOE_BUILD_DIR/install" "${extra[@]}"
  fi
  log "build: $(nproc) parallel jobs"
  cmake --build "$MOE_BUILD_DIR" --parallel "$(nproc)"
}

setup_all() {
  step_timer_start; ensure_apt_packages; step_timer_end "Debian packages"
  step_timer_start; ensure_venv; step_timer_end "virtualenv + torch"
  step_timer_start; configure_and_build "$@"; step_timer_end "configure + build"
}
