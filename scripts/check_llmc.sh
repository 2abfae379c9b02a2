#!/usr/bin/env bash
# Runs llm.c's own CPU trainer (train_gpt2.c, from a checkout the user provides) on minicolossus's
# files and compares its losses with ours on the same tokens.
#
#   scripts/check_llmc.sh --llmc DIR [--mc build/minicolossus] [--work DIR] [--data DIR]
#                         [--steps N] [--full] [--tol X]
#
# DIR holds llm.c's train_gpt2.c and llmc/*.h. It is compiled into the work directory; no llm.c code
# ever enters this repository. What is checked:
#   1. A tiny GPT-2 trained by minicolossus on GPT-2 tokens (default: the built-in corpus, prepared with
#      --tokenizer gpt2), exported with --format llmc, is loaded by llm.c's gpt2_build_from_checkpoint.
#   2. llm.c's val loss at step 0 (its DataLoader on our val shard) == `minicolossus eval` on the same
#      val_num_batches x B sequences of T tokens.
#   3. llm.c's train losses for N steps (and its val loss every 10 steps) == `minicolossus train
#      --init-from` with llm.c's optimizer settings (constant lr, no clipping, no weight decay).
#      llm.c shuffles its training batches; giving it (and us) a train shard of exactly B*T+1 tokens
#      makes every step's batch the same B sequences on both sides, whatever the shuffle.
#   4. The bf16 export (version 5): our eval of it, and whether llm.c's CPU trainer accepts it (llm.c
#      reads version 5 only in train_gpt2.cu; train_gpt2.c refuses it, which is reported, not failed).
# --full lets llm.c run its whole main() (41 steps, sampling at steps 20 and 40) instead of stopping
# it after N steps. Exit: 0 all within --tol (default 1e-3 absolute; fp32 on both sides typically
# agrees to 1e-5), 1 a mismatch or a failure, 2 bad usage, 77 no llm.c directory given (skipped).
set -euo pipefail

usage() { echo "usage: $0 --llmc DIR_WITH_train_gpt2.c [--mc build/minicolossus] [--work DIR] [--data DIR] [--steps N] [--full] [--tol X]" >&2; exit 2; }
bad() { echo "check_llmc: $*" >&2; exit 2; }
die() { echo "check_llmc: FAIL: $*" >&2; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
llmc=${LLMC_DIR:-} mc=$root/build/minicolossus work="" data="" steps="" full=0 tol=1e-3
while [ $# -gt 0 ]; do
  case $1 in
    --llmc|--mc|--work|--data|--steps|--tol) [ $# -ge 2 ] || bad "$1: needs a value" ;;&
    --llmc) llmc=$2; shift 2 ;;
    --mc) mc=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --tol) tol=$2; shift 2 ;;
    --full) full=1; shift ;;
    -h|--help) usage ;;
    *) bad "$1: unknown option" ;;
  esac
done
if [ -z "$llmc" ]; then
  echo "skipped: no llm.c checkout (pass --llmc DIR holding train_gpt2.c, or set LLMC_DIR)"; exit 77
fi
[ -f "$llmc/train_gpt2.c" ] || bad "--llmc $llmc: no train_gpt2.c there"
[ -x "$mc" ] || bad "--mc $mc: not an executable (build first: bash scripts/build.sh)"
[ -z "$steps" ] || [[ $steps =~ ^[1-9][0-9]*$ ]] || bad "--steps $steps: must be a positive integer"
[[ $tol =~ ^[0-9.]+([eE]-?[0-9]+)?$ ]] || bad "--tol $tol: must be a non-negative number"
[ -z "$data" ] || [ -d "$data" ] || bad "--data $data: not a directory"
# Absolute: the shards are symlinked from other directories, where a relative target would dangle.
[ -z "$data" ] || data=$(cd "$data" && pwd)
llmc=$(cd "$llmc" && pwd) mc=$(cd "$(dirname "$mc")" && pwd)/$(basename "$mc")
[ -n "$work" ] || work=$(mktemp -d /tmp/check_llmc.XXXXXX)
mkdir -p "$work" && work=$(cd "$work" && pwd)
echo "llm.c: $llmc   minicolossus: $mc   work: $work"

# ---- What llm.c's main() hard-codes: read from the source, so another llm.c revision is followed or
# refused, never silently mismatched.
src=$llmc/train_gpt2.c
grab() { sed -n "s/$1/\1/p" "$src" | head -n 1; }
B=$(grab '.*int B = \([0-9]*\);.*') T=$(grab '.*int T = \([0-9]*\);.*')
nvb=$(grab '.*int val_num_batches = \([0-9]*\);.*')
model_path=$(grab '.*gpt2_build_from_checkpoint(&model, "\([^"]*\)").*')
train_path=$(grab '.*tiny_shakespeare_train = "\([^"]*\)".*') val_path=$(grab '.*tiny_shakespeare_val = "\([^"]*\)".*')
val_every=$(grab '.*if (step % \([0-9]*\) == 0).*') last_step=$(grab '.*for (int step = 0; step <= \([0-9]*\); step++).*')
# gpt2_update(&model, lr, beta1, beta2, eps, weight_decay, step+1): the C float suffix dropped.
read -r lr beta1 beta2 eps wd < <(sed -n 's/.*gpt2_update(&model, \([^,]*\), \([^,]*\), \([^,]*\), \([^,]*\), \([^,]*\), step+1).*/\1 \2 \3 \4 \5/p' "$src" | head -n 1 | sed 's/f\b//g') || true
for v in B T nvb model_path train_path val_path val_every last_step lr beta1 beta2 eps wd; do
  [ -n "${!v}" ] || die "$src: could not find $v in main(); this llm.c revision is not one this script knows"
done
[ -n "$steps" ] || steps=$((val_every + 1))  # through the first val loss after training
[ "$full" = 0 ] || steps=$((last_step + 1))
[ "$steps" -le $((last_step + 1)) ] || bad "--steps $steps: llm.c's main() trains $((last_step + 1)) steps"
echo "llm.c main(): B=$B T=$T val $nvb batches every $val_every steps, lr $lr betas $beta1 $beta2 eps $eps wd $wd"

# ---- Build llm.c's trainer (into the work dir only).
${CC:-gcc} -O2 -fopenmp -o "$work/train_gpt2" "$src" -lm || die "compiling $src"

# ---- Our files: a tiny model trained a few steps, exported in both llm.c versions.
if [ -z "$data" ]; then
  "$mc" train --tokenizer gpt2 --model tiny --steps 20 --batch "$B" --seq "$T" --val-every 0 \
    --ckpt-dir "$work/ck" >"$work/mc_train0.log" 2>&1 || die "minicolossus train (see $work/mc_train0.log)"
  data=$("$mc" info "$work/ck/ckpt_00000020.bin" --json | sed -n 's/^ *"data_dir": "\(.*\)",$/\1/p')
else
  "$mc" train --data "$data" --model tiny --steps 20 --batch "$B" --seq "$T" --val-every 0 \
    --ckpt-dir "$work/ck" >"$work/mc_train0.log" 2>&1 || die "minicolossus train (see $work/mc_train0.log)"
fi
"$mc" export --ckpt "$work/ck/ckpt_00000020.bin" --out "$work/model_fp32.bin" --format llmc >/dev/null
"$mc" export --ckpt "$work/ck/ckpt_00000020.bin" --out "$work/model_bf16.bin" --format llmc-bf16 >/dev/null
shards=("$data"/*train*.bin) vals=("$data"/*val*.bin)
train_shard=${shards[0]} val_shard=${vals[0]}  # the first of each, as sorted by the glob
if [ ! -f "$train_shard" ] || [ ! -f "$val_shard" ]; then bad "--data $data: no *train*.bin or *val*.bin shard"; fi
ntok() { od -An -t d4 -j 8 -N 4 "$1" | tr -d ' '; }  # header[2]: the shard's token count
[ "$(ntok "$val_shard")" -gt $((nvb * B * T)) ] || bad "--data $data: $val_shard has too few tokens for llm.c's $nvb val batches of $B x $T"

# The one-batch train shard: our train shard's header with the count set to B*T+1, and its first
# B*T+1 tokens. Both trainers then see the same B sequences at every step.
n=$((B * T + 1))
[ "$(ntok "$train_shard")" -ge "$n" ] || bad "--data $data: $train_shard has fewer than $n tokens"
mkdir -p "$work/onebatch"
{ head -c 8 "$train_shard"
  # shellcheck disable=SC2059  # the format is the four bytes, as octal escapes
  printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((n & 255)) $((n >> 8 & 255)) $((n >> 16 & 255)) $((n >> 24 & 255)))"
  dd if="$train_shard" iflag=skip_bytes,count_bytes skip=12 count=$((1012 + 2 * n)) status=none
} >"$work/onebatch/train_000000.bin"
ln -sf "$val_shard" "$work/onebatch/val_000000.bin"
[ ! -f "$data/tokenizer.json" ] || cp "$data/tokenizer.json" "$work/onebatch/"

# ---- llm.c, in a directory laid out as its main() expects. Stopped (by its pid) once it has printed
# the steps we compare, unless --full.
run_llmc() {  # run_llmc DIR MODEL LAST_LINE_REGEX -> DIR/llmc.log, returns llm.c's exit code (0 if we stopped it)
  local dir=$1
  mkdir -p "$dir/$(dirname "$train_path")" "$dir/$(dirname "$val_path")"
  ln -sf "$2" "$dir/$model_path"
  ln -sf "$work/onebatch/train_000000.bin" "$dir/$train_path"
  ln -sf "$val_shard" "$dir/$val_path"
  [ ! -f "$data/gpt2_tokenizer.bin" ] || ln -sf "$data/gpt2_tokenizer.bin" "$dir/gpt2_tokenizer.bin"
  # llm.c prints with stdio, fully buffered into a file: line-buffer it (stdbuf), or the lines we wait
  # for arrive only with the next 4 KiB, after another ten steps and a round of sampling.
  local buf=(); command -v stdbuf >/dev/null && buf=(stdbuf -oL)
  (cd "$dir" && exec "${buf[@]}" "$work/train_gpt2") >"$dir/llmc.log" 2>&1 &
  local pid=$! rc=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ -n "$3" ] && grep -qs "$3" "$dir/llmc.log"; then kill "$pid"; wait "$pid" 2>/dev/null || true; return 0; fi
    sleep 0.2
  done
  wait "$pid" || rc=$?
  return "$rc"
}
last_re="^step $((steps - 1)):"; [ "$full" = 0 ] || last_re=""
run_llmc "$work/llmc_fp32" "$work/model_fp32.bin" "$last_re" || die "llm.c's train_gpt2 failed on our fp32 file (see $work/llmc_fp32/llmc.log)"
log=$work/llmc_fp32/llmc.log
mapfile -t l_val < <(sed -n 's/^val loss \(.*\)$/\1/p' "$log")
mapfile -t l_train < <(sed -n 's/^step \([0-9]*\): train loss \([^ ]*\).*/\2/p' "$log" | head -n "$steps")
[ "${#l_train[@]}" -eq "$steps" ] || die "llm.c printed ${#l_train[@]} train losses, expected $steps (see $log)"
if grep -q "Failed to open the tokenizer file" "$log"; then
  echo "note: $data has no gpt2_tokenizer.bin (prepared by an older minicolossus, or not GPT-2 tokens): llm.c samples print token ids"
fi

# ---- Ours on the same tokens, with llm.c's settings.
m_val0=$("$mc" eval --model-file "$work/model_fp32.bin" --data "$work/onebatch" --seq "$T" --batch "$B" \
  --max-seqs $((nvb * B)) | sed -n 's/^val_loss \([^ ]*\).*/\1/p')
rm -rf "$work/ck2" "$work/metrics.jsonl"
"$mc" train --data "$work/onebatch" --init-from "$work/model_fp32.bin" --batch "$B" --seq "$T" --steps "$steps" \
  --lr "$lr" --warmup 0 --min-lr-frac 1 --weight-decay "$wd" --beta1 "$beta1" --beta2 "$beta2" --eps "$eps" \
  --grad-clip 0 --val-every "$val_every" --val-seqs $((nvb * B)) --ckpt-dir "$work/ck2" \
  --metrics "$work/metrics.jsonl" >"$work/mc_train.log" 2>&1 || die "minicolossus train --init-from (see $work/mc_train.log)"
field() { grep -o "\"$1\":[^,}]*" "$work/metrics.jsonl" | cut -d: -f2; }
mapfile -t m_train < <(field loss)
mapfile -t m_val < <(field val_loss)  # at steps val_every, 2*val_every, ... (and the last step)

# ---- Compare. llm.c's val loss k (k >= 1) is after k*val_every updates, as is our k-th val_loss.
fails=0
row() {  # row LABEL LLMC OURS TOL
  local verdict
  verdict=$(awk -v a="$2" -v b="$3" -v t="$4" 'BEGIN {
    if (a !~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ || b !~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/) { print "not a number"; exit }
    d = a - b; if (d < 0) d = -d; printf "%.2e %s", d, (d <= t ? "ok" : "MISMATCH") }')
  printf '%-24s %12s %14s   %s\n' "$1" "$2" "${3:0:12}" "$verdict"
  case $verdict in *ok) ;; *) fails=$((fails + 1)) ;; esac
}
printf '%-24s %12s %14s   %s\n' "" "llm.c" "minicolossus" "|diff|"
row "val loss, step 0" "${l_val[0]:-none}" "${m_val0:-none}" "$tol"
for ((s = 0; s < steps; s++)); do row "train loss, step $s" "${l_train[$s]}" "${m_train[$s]:-none}" "$tol"; done
for ((k = 1; k * val_every < steps + 0 && k < ${#l_val[@]}; k++)); do
  row "val loss, step $((k * val_every))" "${l_val[$k]}" "${m_val[$((k - 1))]:-none}" "$tol"
done

# ---- bf16 (version 5): our own reading of it, and what llm.c's CPU trainer makes of it.
m_bf16=$("$mc" eval --model-file "$work/model_bf16.bin" --data "$work/onebatch" --seq "$T" --batch "$B" \
  --max-seqs $((nvb * B)) | sed -n 's/^val_loss \([^ ]*\).*/\1/p')
row "bf16 export: our val" "$m_val0" "$m_bf16" 1e-2  # bf16 rounding of every weight
if run_llmc "$work/llmc_bf16" "$work/model_bf16.bin" "^val loss" && grep -q "^val loss" "$work/llmc_bf16/llmc.log"; then
  row "bf16 export: llm.c val" "$(sed -n 's/^val loss //p' "$work/llmc_bf16/llmc.log")" "$m_bf16" "$tol"
elif grep -q "Bad version in model file" "$work/llmc_bf16/llmc.log"; then
  echo "bf16 export: llm.c's train_gpt2.c refuses version 5 (it reads only fp32 version 3; bf16 is train_gpt2.cu's)"
else
  echo "bf16 export: llm.c failed unexpectedly (see $work/llmc_bf16/llmc.log)"; fails=$((fails + 1))
fi

if [ "$fails" -gt 0 ]; then echo "FAIL: $fails figure(s) differ by more than $tol (files kept in $work)"; exit 1; fi
echo "OK: llm.c's train_gpt2.c agrees with minicolossus within $tol on every figure"
