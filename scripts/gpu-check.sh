#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU (UNVERIFIED: written without
# access to one; see docs/gpu.md):
#   1. builds (scripts/setup.sh: packages, .venv, cmake, ninja),
#   2. runs lit, where the cuda-device tests (test/Integration/GPU) now run,
#   3. assembles every emitted kernel with ptxas for the local GPU and prints
#      registers/spills,
#   4. checks every GPU kernel against the NumPy reference on random and real
#      data and prints the timing tables (scripts/gpu_check.py).
# Usage: scripts/gpu-check.sh [--skip-timing] [--lengths=4096,32768,131072]
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nvidia-smi >/dev/null && nvidia-smi -L || {
  echo "gpu-check: nvidia-smi does not list a GPU; this script needs one" >&2; exit 1; }
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"

scripts/setup.sh
echo "== lit (cuda-device tests enabled when nvidia-smi works)"
/usr/lib/llvm-22/bin/lit -sv build/test/Integration/GPU build/test/Conversion/KVCacheToGPU build/test/Pipelines

echo "== ptxas report for this GPU"
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
chip="sm_${cc}"; [ "$cc" = 90 ] && chip=sm_90a
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
build/bin/kvmerge-opt test/Integration/GPU/kernels.mlir \
  --kvmerge-lower-to-nvvm="chip=${chip} features=+ptx80 dump-ptx=$tmp/ptx" -o /dev/null
PTXAS="${CUDA_HOME}/bin/ptxas"; command -v "$PTXAS" >/dev/null || PTXAS=ptxas
.venv/bin/python scripts/ptxas-report.py --ptxas "$PTXAS" --arch "$chip" "$tmp/ptx"

echo "== kernels vs kvmerge.reference, timing"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "(torch not installed: the PyTorch comparison and the d2d copy baseline print nan)"
fi
.venv/bin/python scripts/gpu_check.py "$@"
