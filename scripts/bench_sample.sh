#!/usr/bin/env bash
# Sampling benchmark (not a test): tokens/s of `minicolossus sample` with the KV cache and without
# it (--no-kv-cache), for a randomly initialised model (default d12 = GPT-2 124M shape) on the
# built-in corpus's byte vocabulary, a 64-token prompt and 256 new tokens, on the CPU.
#   bash scripts/bench_sample.sh [--bin PATH] [--model d12] [--tokens 256] [--runs 1]
# Without --bin it sets up and builds build/minicolossus first. tokens/s counts the new tokens after
# the first: each mode is timed with --tokens N and with --tokens 1 (checkpoint load, prompt), and
# the rate is (N - 1) / (time(N) - time(1)). It also checks that both modes print the same text.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="" MODEL=d12 TOKENS=256 RUNS=1
usage() { echo "usage: bash scripts/bench_sample.sh [--bin PATH] [--model PRESET] [--tokens N] [--runs R]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) [ $# -ge 2 ] || usage; BIN=$2; shift 2 ;;
    --model) [ $# -ge 2 ] || usage; MODEL=$2; shift 2 ;;
    --tokens) [ $# -ge 2 ] || usage; TOKENS=$2; shift 2 ;;
    --runs) [ $# -ge 2 ] || usage; RUNS=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "bench_sample.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ "$TOKENS" =~ ^[0-9]+$ ]] && [ "$TOKENS" -ge 2 ] || { echo "bench_sample.sh: --tokens $TOKENS: must be an integer >= 2" >&2; exit 2; }
[[ "$RUNS" =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] || { echo "bench_sample.sh: --runs $RUNS: must be an integer >= 1" >&2; exit 2; }
if [ -z "$BIN" ]; then
  bash scripts/setup.sh
  bash scripts/build.sh >/dev/null
  BIN=build/minicolossus
fi
[ -x "$BIN" ] && [ -f "$BIN" ] || { echo "bench_sample.sh: --bin $BIN: not an executable file" >&2; exit 2; }
if ! "$BIN" sample --help 2>/dev/null | grep -q -- "--no-kv-cache"; then
  echo "bench_sample.sh: $BIN sample has no --no-kv-cache flag (a build from before the KV cache)" >&2
  exit 2
fi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# Random initialisation is enough for speed: one optimizer step writes a checkpoint of the right shape.
"$BIN" train --model "$MODEL" --steps 1 --batch 1 --seq 64 --val-seqs 0 --ckpt-dir "$W/ck" \
  --metrics "" >"$W/train.txt" 2>&1 || { cat "$W/train.txt" >&2; exit 1; }
CKPT=$(ls "$W"/ck/ckpt_*.bin | tail -1)
# 64 characters = 64 tokens of the byte tokenizer.
PROMPT="In the beginning God created the heaven and the earth. And the e"
[ "${#PROMPT}" -eq 64 ] || { echo "bench_sample.sh: prompt is not 64 characters" >&2; exit 1; }
secs() {  # seconds of one sample run; its text goes to $W/out_<tag>.txt
  local tag=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$BIN" sample --ckpt "$CKPT" --prompt "$PROMPT" --seed 7 --top-k 40 "$@" >"$W/out_$tag.txt"
  t1=$(date +%s.%N)
  python3 -c "print($t1 - $t0)"
}
echo "model $MODEL (random init, byte vocabulary), prompt 64 tokens, $TOKENS new tokens, threads ${OMP_NUM_THREADS:-$(nproc)}, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-12s %10s %12s %10s\n" "mode" "total s" "tokens/s" "runs"
declare -A RATE
for mode in cached uncached; do
  flags=()
  [ "$mode" = uncached ] && flags=(--no-kv-cache)
  best=""
  for _ in $(seq 1 "$RUNS"); do  # the best of R runs: the machine may be shared
    one=$(secs "${mode}_1" --tokens 1 "${flags[@]}")
    all=$(secs "$mode" --tokens "$TOKENS" "${flags[@]}")
    r=$(python3 -c "d = $all - $one; print(f'{($TOKENS - 1) / d:.2f}' if d > 0 else 'inf')")
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if float('$r') > float('$best') else 1)"; then
      best=$r
      tot=$all
    fi
  done
  RATE[$mode]=$best
  printf "%-12s %10.2f %12s %10s\n" "$mode" "$tot" "$best" "$RUNS"
done
python3 -c "print(f'speed-up {float(\"${RATE[cached]}\") / float(\"${RATE[uncached]}\"):.1f}x')"
if cmp -s "$W/out_cached.txt" "$W/out_uncached.txt"; then
  echo "same text with and without the cache: yes"
else
  echo "same text with and without the cache: NO" >&2
  exit 1
fi
