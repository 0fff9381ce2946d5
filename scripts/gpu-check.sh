#!/usr/bin/env bash
# The GPU check in two steps (docs/gpu.md, python/kvmerge/gpucheck):
#
#   scripts/gpu-check.sh prepare [DIR] [options]
#       here, with the kvmerge build (kvmerge-aot, ptxas): ahead-of-time artifacts for sm_90a,
#       inputs and kvmerge.reference's expected outputs, a manifest; DIR (default gpu-prepared/,
#       git-ignored) stays well under the 64 MiB a working tree may carry to a GPU machine.
#   scripts/gpu-check.sh run [DIR] [--out OUT] [options]
#       on the GPU machine: needs only python3 with numpy and torch, and a CUDA driver (no LLVM,
#       MLIR, build or network). Checks every case, times compress and decode attention, writes
#       report.md, results.json and log.txt under OUT (default $OUT, else gpu-check-out/);
#       stops taking new cases after --deadline seconds (default 420).
#
# Options: `scripts/gpu-check.sh prepare --help`, `scripts/gpu-check.sh run --help`.
# `prepare --target=cpu` builds CPU artifacts, with which `run` tests the harness without a GPU.
# Exit status of run: 0 pass, 1 a failure, 2 could not start (no manifest, torch, driver or GPU),
# 3 the deadline cut something.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; }
step="${1:-}"
[ $# -gt 0 ] && shift
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
case "$step" in
  prepare)
    PY="${PYTHON:-.venv/bin/python}"
    [ -x "$PY" ] || PY=python3
    if [ ! -x build/bin/kvmerge-aot ] || [ ! -f build/lib/libKVMergeAOTRuntime.a ]; then
      echo "gpu-check prepare: build/bin/kvmerge-aot or build/lib/libKVMergeAOTRuntime.a is missing;" \
           "build first (scripts/setup.sh, or ninja -C build)" >&2
      exit 1
    fi
    export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
    exec "$PY" -m kvmerge.gpucheck prepare "$@" ;;
  run)
    PY="${PYTHON:-python3}"
    export PYTHONUNBUFFERED=1
    exec "$PY" -m kvmerge.gpucheck run "$@" ;;
  -h|--help|help) usage; exit 0 ;;
  *) usage; echo "gpu-check: expected 'prepare' or 'run' as the first argument, got '${step}'" >&2; exit 2 ;;
esac
