#!/usr/bin/env bash
# Builds the libFuzzer targets (ASan + UBSan + coverage on kvmerge's own code)
# in build-fuzz/, replays every saved regression input, then fuzzes each target
# for N seconds (default 60), one after the other, niced. Fails if a
# regression input or the fuzzer crashes; a new crash input is copied to
# fuzz/regressions/<target>/ so it is replayed from then on.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#   scripts/fuzz.sh 0                      # build + replay regressions only
#
# Corpora grow across runs in build-fuzz/fuzz/corpus/<target>/ (seeds are
# regenerated from the lit tests by fuzz/make_seeds.py each run); logs are in
# build-fuzz/fuzz/<target>.log. A summary line per target gives executions,
# exec/s and final coverage (cov: = edges of instrumented code, i.e. ours).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/lib.sh
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(kvmerge-fuzz-npy kvmerge-fuzz-ir kvmerge-fuzz-compress)
BUILD=${KVMERGE_FUZZ_BUILD_DIR:-build-fuzz}
WORK=$ROOT/$BUILD/fuzz

log() { printf '\033[1m[fuzz]\033[0m %s\n' "$*"; }

if [[ ! -f $(clang-22 -print-file-name=libclang_rt.fuzzer-x86_64.a) ]]; then
  log "libFuzzer runtime missing: apt-get install libclang-rt-22-dev"; exit 1
fi
[[ -x .venv/bin/python ]] || { log "no .venv: run scripts/setup.sh first"; exit 1; }

if [[ ! -f $BUILD/build.ninja ]]; then
  log "configuring $BUILD"
  kvmerge_configure "$BUILD" \
    -DKVMERGE_SANITIZE=address,undefined,fuzzer-no-link \
    -DKVMERGE_FUZZ=ON || exit 1
fi
log "building ${TARGETS[*]}"
nice -n 10 ninja -C "$BUILD" -j"${KVMERGE_JOBS:-2}" "${TARGETS[@]}" | tail -1
[[ ${PIPESTATUS[0]} -eq 0 ]] || { log "build failed"; exit 1; }

mkdir -p "$WORK"
.venv/bin/python fuzz/make_seeds.py "$WORK/seeds" >/dev/null || exit 1

# allow_user_poisoning=0: LLVM headers inlined into our instrumented code
# poison BumpPtrAllocator slabs that the uninstrumented libMLIR then
# allocates from without unpoisoning (false use-after-poison in the parser).
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:allocator_may_return_null=1:detect_stack_use_after_return=1:allow_user_poisoning=0"
export LSAN_OPTIONS="suppressions=$ROOT/scripts/sanitizer/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$ROOT/scripts/sanitizer/ubsan.supp"
export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-22/bin/llvm-symbolizer

failed=0
for t in "${TARGETS[@]}"; do
  bin=$ROOT/$BUILD/bin/$t
  # 1. Replay the regression inputs (each must now run cleanly).
  reg=$ROOT/fuzz/regressions/$t
  if [[ -d $reg ]] && compgen -G "$reg/*" >/dev/null; then
    if nice -n 10 "$bin" -runs=1 "$reg"/* >"$WORK/$t.replay.log" 2>&1; then
      log "$t: $(ls "$reg" | wc -l) regression inputs replayed cleanly"
    else
      log "$t: REGRESSION input crashes again; see $WORK/$t.replay.log"
      tail -30 "$WORK/$t.replay.log"; failed=1
    fi
  fi
  ((SECONDS_PER_TARGET > 0)) || continue
  # 2. Fuzz.
  corpus=$WORK/corpus/$t; artifacts=$WORK/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  case $t in
    kvmerge-fuzz-ir) opts=(-max_len=8192 -timeout=30) ;;
    kvmerge-fuzz-npy) opts=(-max_len=4096 -timeout=10) ;;
    kvmerge-fuzz-compress) opts=(-max_len=8192 -timeout=120) ;;
    *) opts=() ;;
  esac
  log "$t: fuzzing for ${SECONDS_PER_TARGET}s (log: $WORK/$t.log)"
  nice -n 10 "$bin" "${opts[@]}" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=6144 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "$WORK/seeds/$t" \
    >"$WORK/$t.log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$t.log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$WORK/$t.log")
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$WORK/$t.log" | tail -1)
  corp=$(ls "$corpus" | wc -l)
  log "$t: rc=$rc, ${execs:-?} execs, ${rate:-?} exec/s, ${cov:-cov: ?}, corpus $corp files"
  if ((rc != 0)); then
    failed=1
    mkdir -p "$reg"
    for a in "$artifacts"/*; do
      [[ -f $a ]] || continue
      cp "$a" "$reg/" && log "$t: saved $(basename "$a") to fuzz/regressions/$t/"
    done
    grep -m1 -A30 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|invariant broken|==ERROR' "$WORK/$t.log"
  fi
done
exit $failed
