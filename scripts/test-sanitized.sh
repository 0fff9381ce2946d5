#!/usr/bin/env bash
# Builds kvmerge with AddressSanitizer + UndefinedBehaviorSanitizer (and
# LeakSanitizer) in build-asan/ and runs the whole lit suite and pytest
# against it. Any sanitizer report aborts the process that hit it
# (-fno-sanitize-recover=all, halt_on_error), so it shows up as a failed test.
#
# Only kvmerge's own code is instrumented; Debian's libMLIR.so / libLLVM.so and
# the JIT-compiled kernels are not (ASan still checks their heap accesses via
# the intercepted malloc/free, but not their loads/stores).
#
#   scripts/test-sanitized.sh                 # configure (once), build, test
#   KVMERGE_SANITIZE=address scripts/...      # another -fsanitize= list
#   KVMERGE_JOBS=1 scripts/...                # ninja -j (default 2)
#
# The last line is "N passed, N failed", like scripts/test.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/lib.sh
BUILD=${KVMERGE_ASAN_BUILD_DIR:-build-asan}
SAN=${KVMERGE_SANITIZE:-address,undefined}

log() { printf '\033[1m[asan]\033[0m %s\n' "$*"; }

[[ -x .venv/bin/python ]] || { log "no .venv: run scripts/setup.sh first"; exit 1; }

if [[ ! -f $BUILD/build.ninja ]]; then
  log "configuring $BUILD (KVMERGE_SANITIZE=$SAN)"
  kvmerge_configure "$BUILD" -DKVMERGE_SANITIZE="$SAN" || exit 1
fi
log "building $BUILD"
start=$(date +%s)
nice -n 10 ninja -C "$BUILD" -j"${KVMERGE_JOBS:-2}" | tail -1
[[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "0 passed, 1 failed (build)"; exit 1; }
log "build done in $(( $(date +%s) - start ))s"

# Reports are fatal and go to stderr (which the tests capture, so a report
# also breaks FileCheck / pytest assertions) and to $BUILD/sanitizer-logs/.
LOGS=$ROOT/$BUILD/sanitizer-logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
SUPP=$ROOT/scripts/sanitizer
# allow_user_poisoning=0: see scripts/fuzz.sh (LLVM header/libMLIR mismatch).
# use_sigaltstack=0: the tools parse (kvmerge-opt: run all of MlirOptMain) on
# a 1 GiB-stack thread; LLVM's signal setup there (InitLLVM) finds ASan's
# per-thread alternate signal stack smaller than it wants (MINSIGSTKSZ is
# sysconf-sized on this AVX-512 host: 13504 + 64 KiB = 79040 bytes) and
# installs its own, malloc'ed one; at thread exit ASan munmaps "its" stack,
# which is now LLVM's block: "failed to deallocate 0x134c0 bytes" (EINVAL) in
# every kvmerge-opt run. Without it ASan leaves alternate stacks to LLVM.
# allocator_may_return_null=1: compiled code's failed allocations must reach
# the runner's checked malloc (test/tools/kvmerge-run/alloc-failure.mlir)
# instead of ASan's allocation-size-too-big abort (as in scripts/fuzz.sh).
export ASAN_OPTIONS="allow_user_poisoning=0:use_sigaltstack=0:allocator_may_return_null=1:detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:log_path=$LOGS/asan"
export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$SUPP/ubsan.supp:log_path=$LOGS/ubsan"
export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-22/bin/llvm-symbolizer
export PATH="$ROOT/.venv/bin:$PATH"

echo "== lit ($BUILD) =="
# test/Plugin runs Debian's (uninstrumented) mlir-opt, which can only load the
# ASan-instrumented plugin with the ASan runtime preloaded; it runs separately
# below with LD_PRELOAD.
lit_out=$(/usr/lib/llvm-22/bin/lit -sv "$BUILD/test" --filter-out 'Plugin/' 2>&1); lit_rc=$?
echo "$lit_out" | grep -vE '^(PASS|UNSUPPORTED): ' | tail -40
lit_pass=$(echo "$lit_out" | sed -n 's/^ *Passed *: *\([0-9]*\).*/\1/p'); lit_pass=${lit_pass:-0}
lit_fail=$(echo "$lit_out" | sed -n 's/^ *Failed *: *\([0-9]*\).*/\1/p'); lit_fail=${lit_fail:-0}
[[ $lit_rc -ne 0 && $lit_fail -eq 0 ]] && lit_fail=1

# The tools link the shared ASan runtime (-shared-libsan, see CMakeLists.txt),
# so an uninstrumented host process can preload the same one.
ASAN_RT=$(clang-22 -print-file-name=libclang_rt.asan-x86_64.so)
PRELOAD=""
[[ $SAN == *address* ]] && PRELOAD=$ASAN_RT
# mlir-opt and libMLIR are not instrumented, and their allocations that are
# still reachable at exit are not ours: no leak checking for this one.
plug_out=$(LD_PRELOAD=$PRELOAD ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" \
           /usr/lib/llvm-22/bin/lit -sv "$BUILD/test" --filter 'Plugin/' 2>&1); plug_rc=$?
echo "$plug_out" | grep -vE '^(PASS|UNSUPPORTED): ' | tail -20
if [[ $plug_rc -eq 0 ]]; then lit_pass=$((lit_pass + 1)); else lit_fail=$((lit_fail + 1)); fi

echo "== pytest (KVMERGE_BUILD_DIR=$BUILD) =="
# The Python extension (kvmerge._native) runs inside the uninstrumented
# interpreter: preload the runtime; no leak checking (CPython's own
# allocations); the kvmerge-run subprocesses inherit both settings.
py_out=$(LD_PRELOAD=$PRELOAD ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" \
         KVMERGE_BUILD_DIR=$ROOT/$BUILD .venv/bin/python -m pytest -q -m "not slow" -p no:cacheprovider 2>&1); py_rc=$?
echo "$py_out" | tail -25
py_pass=$(echo "$py_out" | tail -1 | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+'); py_pass=${py_pass:-0}
py_fail=$(echo "$py_out" | tail -1 | grep -oE '[0-9]+ (failed|errors?)' | awk '{s+=$1} END {print s+0}')
[[ $py_rc -ne 0 && $py_fail -eq 0 ]] && py_fail=1

# With allocator_may_return_null=1 ASan logs one warning line per refused
# allocation and returns null, which our code then reports (alloc-failure.mlir
# does that on purpose): a log holding only such lines is not a report.
reports=0
refused=0
for f in "$LOGS"/*; do
  [[ -e $f ]] || continue
  if ! grep -qv 'WARNING: AddressSanitizer failed to allocate 0x' "$f"; then
    refused=$((refused + 1))
    continue
  fi
  reports=$((reports + 1))
  echo "--- $f"; head -40 "$f"
done
echo "== sanitizer reports: $reports (allocations refused as the tests expect: $refused) =="

echo "lit: ${lit_pass} passed, ${lit_fail} failed; pytest: ${py_pass} passed, ${py_fail} failed; sanitizer reports: ${reports}"
echo "$((lit_pass + py_pass)) passed, $((lit_fail + py_fail + reports)) failed"
[[ $lit_fail -eq 0 && $py_fail -eq 0 && $reports -eq 0 ]]
