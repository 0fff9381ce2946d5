#!/usr/bin/env bash
# Sets up, builds and runs the whole kvmerge test suite: lit (FileCheck,
# -verify-diagnostics, executable CPU tests) and pytest (reference, compiled
# kernels vs the reference, real-model data). The last line is a summary:
# "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || { echo "0 passed, 1 failed (setup/build)"; exit 1; }
export PATH="$PWD/.venv/bin:$PATH"

echo "== lit =="
lit_out=$(/usr/lib/llvm-22/bin/lit -sv build/test 2>&1); lit_rc=$?
echo "$lit_out" | grep -vE '^(PASS|UNSUPPORTED): ' | tail -40
lit_pass=$(echo "$lit_out" | sed -n 's/^ *Passed *: *\([0-9]*\).*/\1/p'); lit_pass=${lit_pass:-0}
lit_fail=$(echo "$lit_out" | sed -n 's/^ *Failed *: *\([0-9]*\).*/\1/p'); lit_fail=${lit_fail:-0}
[[ $lit_rc -ne 0 && $lit_fail -eq 0 ]] && lit_fail=1

echo "== pytest =="
py_out=$(.venv/bin/python -m pytest -q -m "not slow" -p no:cacheprovider 2>&1); py_rc=$?
echo "$py_out" | tail -25
py_pass=$(echo "$py_out" | tail -1 | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+'); py_pass=${py_pass:-0}
py_fail=$(echo "$py_out" | tail -1 | grep -oE '[0-9]+ (failed|errors?)' | awk '{s+=$1} END {print s+0}')
[[ $py_rc -ne 0 && $py_fail -eq 0 ]] && py_fail=1

echo "lit: ${lit_pass} passed, ${lit_fail} failed; pytest: ${py_pass} passed, ${py_fail} failed"
echo "$((lit_pass + py_pass)) passed, $((lit_fail + py_fail)) failed"
[[ $lit_fail -eq 0 && $py_fail -eq 0 ]]
