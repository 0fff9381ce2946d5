#!/usr/bin/env bash
# Sets up everything kvmerge needs on Debian 12 and builds it (idempotent,
# incremental): Debian's LLVM/MLIR 22 toolchain, a project virtualenv with the
# PyPI packages, a CMake+Ninja build in build/.
#
#   scripts/setup.sh            # packages + venv + build
#   KVMERGE_SKIP_APT=1 ...      # skip the apt step (packages already present)
#   KVMERGE_SKIP_TORCH=1 ...    # skip torch/torch-mlir/transformers (frontend tests skip)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/lib.sh

APT_PACKAGES=(llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools clang-22 lld-22
              ninja-build cmake python3-venv python3-dev)

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if [[ -z "${KVMERGE_SKIP_APT:-}" ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  log "creating the virtualenv .venv"
  python3 -m venv .venv
fi
stamp=.venv/.kvmerge-requirements
want=$(cat python/requirements.txt python/requirements-eval.txt python/requirements-iree.txt python/requirements-torch.txt 2>/dev/null | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  log "installing PyPI packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -r python/requirements.txt
  if [[ -f python/requirements-eval.txt ]]; then
    .venv/bin/python -m pip install -q -r python/requirements-eval.txt
  fi
  # The real IREE for the interop test; optional (the test skips, saying
  # why, when the wheels cannot be installed on this machine).
  .venv/bin/python -m pip install -q -r python/requirements-iree.txt ||
    log "could not install the IREE wheels; test/python/test_iree.py will skip"
  # PyTorch frontends (torch-mlir, transformers) for the real-frontend tests
  # and the whole-model path; ~3 GB of CUDA libraries come with torch.
  if [[ -z "${KVMERGE_SKIP_TORCH:-}" ]]; then
    log "installing torch, torch-mlir, transformers (python/requirements-torch.txt)"
    .venv/bin/python -m pip install -q -r python/requirements-torch.txt ||
      log "could not install the torch packages; the frontend tests will skip"
  fi
  echo "$want" > "$stamp"
fi

if [[ ! -f build/build.ninja ]]; then
  log "configuring (CMake + Ninja, clang-22, lld, libMLIR.so)"
  kvmerge_configure build
fi
log "building"
start=$(date +%s)
ninja -C build ${KVMERGE_BUILD_TARGETS:-} | tail -1
log "build done in $(( $(date +%s) - start ))s"
