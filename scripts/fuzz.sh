#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan) in their own build directory
# and runs each for N seconds on a fresh copy of its seed corpus (tests/fuzz/corpus/<target>).
#   scripts/fuzz.sh [--seconds N] [--jobs J] [--build-dir DIR] [--build-only | --no-build]
#                   [--make-seeds [REAL_CHECKPOINT]] [--src-root TREE] [targets...]
# Targets: shard llmc_model checkpoint checkpoint_meta tokenizer_json safetensors (default: all).
# Prints per target: executions, exec/s, coverage, findings (inputs that crash, trip a sanitizer,
# allocate past the limits, hang, or that a reader accepts and its callers cannot use). Exit 0: no
# findings; 1: findings, saved under DIR/findings/<target>/ with the command that reproduces each;
# 77: no clang with libFuzzer here (the ctest test reports that as skipped); 2: bad usage.
# --src-root fuzzes the src/ of another tree (e.g. `git archive` of an older commit) with these targets.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_PER=60 JOBS=2 BUILD="$ROOT/build-fuzz" MODE=run SEEDS_FROM= SRC_ROOT=
ALL=(shard llmc_model checkpoint checkpoint_meta tokenizer_json safetensors)
TARGETS=()
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER=${2:?}; shift 2 ;;
    --jobs) JOBS=${2:?}; shift 2 ;;
    --build-dir) BUILD=${2:?}; shift 2 ;;
    --build-only) MODE=build; shift ;;
    --src-root) SRC_ROOT=$(realpath "${2:?}"); shift 2 ;;
    --no-build) MODE=nobuild; shift ;;
    --make-seeds) MODE=seeds; shift
                  if [ $# -gt 0 ] && [ -f "$1" ]; then SEEDS_FROM=$(realpath "$1"); shift; fi ;;
    -h|--help) usage ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; usage ;;
    *) if [[ " ${ALL[*]} " == *" $1 "* ]]; then TARGETS+=("$1"); shift
       else echo "fuzz.sh: unknown target '$1' (expected one of: ${ALL[*]})" >&2; exit 2; fi ;;
  esac
done
[[ "$SECONDS_PER" =~ ^[0-9]+$ && "$SECONDS_PER" -gt 0 ]] || { echo "fuzz.sh: --seconds must be a positive integer" >&2; exit 2; }
[[ "$JOBS" =~ ^[0-9]+$ && "$JOBS" -gt 0 ]] || { echo "fuzz.sh: --jobs must be a positive integer" >&2; exit 2; }
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd)

# ---- build -------------------------------------------------------------------------------------
# Note [Fuzz skip]: the fuzzers need clang with the libFuzzer and sanitizer runtimes (Debian:
# clang + libclang-rt-14-dev). Without them this is a skip (77), not a failure: the probe compiles
# and links a trivial fuzzer with exactly the flags the real ones use.
find_clang() {
  for c in "${FUZZ_CXX:-}" clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    [ -n "$c" ] && command -v "$c" >/dev/null && { command -v "$c"; return 0; }
  done
  return 1
}
build() {
  local cxx probe
  if ! cxx=$(find_clang); then echo "SKIP: no clang++ found (the fuzz targets need clang with libFuzzer)"; exit 77; fi
  probe=$(mktemp -d)
  printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' >"$probe/p.cpp"
  if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" >"$probe/log" 2>&1; then
    echo "SKIP: $cxx cannot link a libFuzzer target (install libclang-rt-14-dev): $(head -c 300 "$probe/log")"
    rm -rf "$probe"; exit 77
  fi
  rm -rf "$probe"
  local gen=() gen_args=(); command -v ninja >/dev/null && gen=(-G Ninja)
  # Configured every time (cheap on an existing cache): MC_ROOT is a cache variable, and a build dir
  # once pointed at another tree by --src-root must come back to this one.
  [ -f "$BUILD/CMakeCache.txt" ] || gen_args=("${gen[@]}" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=)
  cmake -S "$ROOT/tests/fuzz" -B "$BUILD" "${gen_args[@]}" -DMC_ROOT="${SRC_ROOT:-$ROOT}" \
    >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log" >&2; exit 1; }
  local t0=$SECONDS
  cmake --build "$BUILD" -j "${FUZZ_BUILD_JOBS:-2}" >"$BUILD/build.log" 2>&1 \
    || { tail -50 "$BUILD/build.log" >&2; echo "fuzz.sh: build failed (log: $BUILD/build.log)" >&2; exit 1; }
  echo "built the fuzz targets with $cxx in $BUILD ($((SECONDS - t0)) s)"
}

if [ "$MODE" != nobuild ]; then build; fi
[ "$MODE" = build ] && exit 0
if [ "$MODE" = seeds ]; then
  rm -rf "$BUILD/seeds" && "$BUILD/make_seeds" "$BUILD/seeds" $SEEDS_FROM || exit 1
  for t in "${ALL[@]}"; do
    mkdir -p "$ROOT/tests/fuzz/corpus/$t" && cp "$BUILD/seeds/$t"/* "$ROOT/tests/fuzz/corpus/$t/"
  done
  du -sh "$ROOT"/tests/fuzz/corpus/* ; exit 0
fi
for t in "${TARGETS[@]}"; do
  [ -x "$BUILD/fuzz_$t" ] || { echo "SKIP: $BUILD/fuzz_$t is not built (run without --no-build)"; exit 77; }
done

# ---- run ---------------------------------------------------------------------------------------
# Note [Restarts]: libFuzzer stops at the first finding. To count every input class still open, a
# target is run again and again (each run resumes from the corpus the earlier runs grew) until its N
# seconds are spent; each finding is saved as crash-*, oom-*, timeout-* or leak-* under
# findings/<target>/. (-fork=1 -ignore_crashes=1 would do this inside libFuzzer, but libFuzzer 14's
# fork mode reported one crash where plain runs found one in every few hundred executions.)
SCRATCH=$(mktemp -d "${FUZZ_TMP_BASE:-/dev/shm}/mc-fuzz.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export MC_FUZZ_TMP=$SCRATCH
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
LIMITS=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10)
run_one() {
  local t=$1
  local dict=() end=$((SECONDS + SECONDS_PER)) runs=0 log="$BUILD/logs/$t.log" left
  rm -rf "$BUILD/corpus/$t" "$BUILD/findings/$t" "$log" && mkdir -p "$BUILD/corpus/$t" "$BUILD/findings/$t"
  cp "$ROOT/tests/fuzz/corpus/$t"/* "$BUILD/corpus/$t/" 2>/dev/null
  [ -f "$ROOT/tests/fuzz/$t.dict" ] && dict=(-dict="$ROOT/tests/fuzz/$t.dict")
  while left=$((end - SECONDS)); [ "$left" -gt 0 ] && [ "$runs" -lt 500 ]; do
    runs=$((runs + 1))
    echo "=== run $runs ($left s left)" >>"$log"
    (cd "$BUILD/findings/$t" && "$BUILD/fuzz_$t" -max_total_time="$left" "${LIMITS[@]}" -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$BUILD/findings/$t/" "${dict[@]}" "$BUILD/corpus/$t" \
      2>&1 | grep -v NEW_FUNC >>"$log")
    # A run that crashed before it finished reading the seeds would only crash again.
    local runlog; runlog=$(sed -n "/^=== run $runs /,\$p" "$log")
    if ! grep -q 'INITED' <<<"$runlog"; then
      echo "=== a seed input itself fails: stopping" >>"$log"; break
    fi
  done
  echo "=== $runs runs" >>"$log"
}
mkdir -p "$BUILD/logs"
echo "fuzzing ${TARGETS[*]} for $SECONDS_PER s each, $JOBS at a time"
running=0
for t in "${TARGETS[@]}"; do
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
  run_one "$t" & running=$((running + 1))
done
wait

# ---- report ------------------------------------------------------------------------------------
# One line per target: executions summed over its runs (-print_final_stats), exec/s over its N
# seconds (start-up of the runs included), coverage (cov: edges, ft: features) of the last status line,
# the corpus size at the end; then each finding class: the first line that names what
# went wrong when the saved input is replayed, with how many inputs share it.
summary_of() {  # replays one saved input; prints its one-line diagnosis
  local out
  out=$(cd "$BUILD/findings" && timeout 60 "$BUILD/fuzz_$1" "${LIMITS[@]}" "$2" 2>&1)
  { grep -m1 -E '==FINDING==|^SUMMARY: |runtime error:|terminate called|what\(\):|out-of-memory|ERROR: libFuzzer' <<<"$out" \
      || echo "no diagnosis (replay passed: flaky or state-dependent)"; } \
    | sed -E 's#'"$ROOT"'/##g; s/^==[0-9]+==//; s/0x[0-9a-f]+/0x…/g; s/\(pid [0-9]+\)//' | head -c 220
}
status=0
printf '%-16s %12s %9s %7s %7s %7s  %s\n' target executions exec/s cov ft corpus findings
for t in "${TARGETS[@]}"; do
  log="$BUILD/logs/$t.log"
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | awk '{s += $1} END {if (NR) print s}')
  line=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$line"); ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$line")
  corp=$(ls "$BUILD/corpus/$t" | wc -l); runs=$(sed -nE 's/^=== ([0-9]+) runs/\1/p' "$log")
  eps=; [ -n "$execs" ] && eps=$((execs / SECONDS_PER))
  mapfile -t found < <(find "$BUILD/findings/$t" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | sort)
  printf '%-16s %12s %9s %7s %7s %7s  %s\n' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${#found[@]}"
  if [ -z "$execs" ]; then
    echo "  no statistics from the fuzzer: see $log"; tail -5 "$log" | sed 's/^/  | /'; status=1
  fi
  grep -q '^=== a seed input itself fails' "$log" && echo "  a seed input itself fails: fuzzing stopped early"
  [ ${#found[@]} -eq 0 ] && continue
  status=1
  declare -A count=() example=()
  for f in "${found[@]:0:40}"; do  # replay at most 40 per target
    s=$(summary_of "$t" "$f"); key=$(sed -E 's/[0-9]+/N/g' <<<"$s")
    count[$key]=$(( ${count[$key]:-0} + 1 )); [ -n "${example[$key]:-}" ] || example[$key]="$f|$s"
  done
  for key in "${!count[@]}"; do
    f=${example[$key]%%|*}
    echo "  ${count[$key]}x ${example[$key]#*|}"
    echo "     reproduce: $BUILD/fuzz_$t $f"
  done
  [ ${#found[@]} -gt 40 ] && echo "  (${#found[@]} inputs saved; the first 40 replayed)"
  unset count example
done
[ $status -eq 0 ] && echo "no findings" || echo "FINDINGS: inputs under $BUILD/findings/<target>/, logs under $BUILD/logs/"
exit $status
