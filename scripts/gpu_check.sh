#!/usr/bin/env bash
# Every GPU check in one call, run from an unpacked bundle (scripts/package.sh puts this file there as
# bin/gpu-check) on a machine with a GPU. Nothing is built or installed; every log goes to one folder.
#   gpu-check [--out DIR] [--stages LIST] [--steps N]
# Stages (default: all, in this order; LIST is comma-separated):
#   smi       nvidia-smi, the bundle's MANIFEST, the run-time libraries found
#   tests     every test program of the bundle (bin/run-tests: unit, gpu, mpi, cli)
#   memcheck  compute-sanitizer --tool memcheck over the GPU tests at their small sizes (-*Large*)
#   d12       d12 on the GPU and on the CPU from the same seed and data: the losses fall alike
#   ranks     2 ranks sharing the GPU (--comm mpi, host staging) == 1 rank with --grad-accum 2;
#             1 rank with --comm nccl initialises and trains
#   bench     d12, batch 16, seq 1024, bf16: minicolossus against the PyTorch peer (bench_pytorch.py)
#   simulate  `minicolossus simulate` with the built-in profile of this GPU (h100 or h200) predicting the
#             bench stage's step time and memory (uncalibrated), then calibrated on that run (needs bench)
#   profile   Nsight Compute over one such training step: GPU time per kernel, top kernels first
#   peers     peers' own programs on our files (this machine has them; CI does not): tiktoken against our
#             GPT-2 tokenizer on the corpus, and transformers' GPT2LMHeadModel loading `export --format hf`
#             of a briefly trained model, its loss against `eval`
# Prints one PASS/FAIL line per stage and DIR/summary.txt; exit 0 only when every stage passed.
set -uo pipefail
BIN=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
ROOT=$(dirname "$BIN")
MC=$BIN/minicolossus
OUT=gpu-check
STAGES=smi,tests,memcheck,d12,ranks,bench,simulate,profile,peers
BENCH_STEPS=30
SKIP=5  # warm-up steps of the bench run left out of its means (bench and simulate stages)
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --stages) STAGES=$2; shift 2 ;;
    --steps) BENCH_STEPS=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
export PATH="$BIN:${PATH:-/usr/local/bin:/usr/bin:/bin}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export MC_CACHE_DIR=$OUT/cache
# This is a GPU machine: a GPU test that finds no usable GPU (a driver too old for the bundle's CUDA
# runtime, a hidden device) fails instead of skipping (NEED_GPU in tests/gpu/gpu_test_util.h).
export MC_REQUIRE_GPU=1
# The default corpus, prepared into the cache from the bundle's text.
CORPUS=$MC_CACHE_DIR/kjv
"$MC" prepare --input "$ROOT/share/minicolossus/kjv.txt" --out "$CORPUS" >/dev/null || exit 1
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
failed=0

result() {  # result STAGE PASS|FAIL DETAIL
  printf '%-4s  %-9s %s\n' "$2" "$1" "$3" | tee -a "$SUMMARY"
  [ "$2" = PASS ] || failed=$((failed + 1))
}
stage_on() { case ",$STAGES," in *",$1,"*) return 0 ;; esac; return 1; }
banner() { echo "== $1 ($(date +%H:%M:%S))"; }
# compare_losses A.jsonl B.jsonl RTOL: every step's loss within RTOL relative; prints the worst step.
compare_losses() {
  python3 - "$@" <<'PY'
import json, sys
a, b, rtol = sys.argv[1], sys.argv[2], float(sys.argv[3])
la = {r["step"]: r["loss"] for r in map(json.loads, open(a)) if "loss" in r}
lb = {r["step"]: r["loss"] for r in map(json.loads, open(b)) if "loss" in r}
steps = sorted(set(la) & set(lb))
if not steps or len(steps) != len(la) or len(steps) != len(lb):
    print(f"steps differ: {len(la)} vs {len(lb)}"); sys.exit(1)
worst = max(steps, key=lambda s: abs(la[s] - lb[s]) / abs(la[s]))
rel = abs(la[worst] - lb[worst]) / abs(la[worst])
first, last = steps[0], steps[-1]
print(f"{len(steps)} steps, loss {la[first]:.4f} -> {la[last]:.4f} vs {lb[first]:.4f} -> {lb[last]:.4f}; "
      f"worst step {worst}: {la[worst]:.5f} vs {lb[worst]:.5f} (rel {rel:.2e}, limit {rtol:g})")
sys.exit(0 if rel <= rtol and la[last] < la[first] else 1)
PY
}

# Random GPT-2-vocabulary shards for the benchmark and the profile (made once).
gpt2_data() {
  [ -f "$OUT/gpt2data/val_000000.bin" ] && return 0
  python3 - "$OUT/gpt2data" <<'PY' >"$OUT/bench_data.log" 2>&1
import array, os, random, struct, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
rnd = random.Random(0)
for name, n in (("train_000000.bin", 8_000_000), ("val_000000.bin", 200_000)):
    toks = array.array("H", (rnd.randrange(50257) for _ in range(n)))
    if sys.byteorder != "little":
        toks.byteswap()
    with open(os.path.join(d, name), "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, n, *([0] * 253))); f.write(toks.tobytes())
PY
}

if stage_on smi; then
  banner smi
  { nvidia-smi; echo; cat "$ROOT/share/minicolossus/MANIFEST"; echo; command -v compute-sanitizer ncu python3
    python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' 2>&1; } >"$OUT/smi.log" 2>&1
  if nvidia-smi -L >>"$OUT/smi.log" 2>&1; then result smi PASS "$(nvidia-smi -L | head -1)"
  else result smi FAIL "nvidia-smi failed (see smi.log)"; fi
fi

if stage_on tests; then
  banner tests
  "$BIN/run-tests" --out "$OUT/tests" >"$OUT/tests.log" 2>&1
  rc=$?
  tail -n 1 "$OUT/tests.log" | grep -q "0 failed" && [ $rc -eq 0 ] &&
    result tests PASS "$(grep '^run-tests:' "$OUT/tests.log")" ||
    result tests FAIL "$(grep '^run-tests:' "$OUT/tests.log") (tests.log)"
fi

if stage_on memcheck; then
  banner memcheck
  if ! command -v compute-sanitizer >/dev/null; then
    result memcheck FAIL "compute-sanitizer not found"
  else
    bad=()
    for exe in "$BIN"/mc_gpu_*; do
      name=$(basename "$exe")
      compute-sanitizer --tool memcheck --error-exitcode 99 --print-limit 20 "$exe" --gtest_color=no \
        --gtest_filter='-*Large*' >"$OUT/memcheck_$name.log" 2>&1 || bad+=("$name")
    done
    if [ ${#bad[@]} -eq 0 ]; then result memcheck PASS "$(grep -h 'ERROR SUMMARY' "$OUT"/memcheck_*.log | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
    else result memcheck FAIL "${bad[*]} (memcheck_*.log)"; fi
  fi
fi

TRAIN=(train --data "$CORPUS" --ckpt-dir "" --val-every 0 --log-every 1 --seed 7)
if stage_on d12; then
  banner d12
  # The same 20 steps of d12 on the bundled corpus, GPU (bf16) and CPU (fp32): losses within 3%.
  D12=(--model d12 --batch 4 --seq 128 --steps 20 --lr 3e-4 --warmup 2)
  "$MC" "${TRAIN[@]}" "${D12[@]}" --device cuda --metrics "$OUT/d12_cuda.jsonl" >"$OUT/d12_cuda.log" 2>&1 &&
    "$MC" "${TRAIN[@]}" "${D12[@]}" --device cpu --metrics "$OUT/d12_cpu.jsonl" >"$OUT/d12_cpu.log" 2>&1 &&
    msg=$(compare_losses "$OUT/d12_cpu.jsonl" "$OUT/d12_cuda.jsonl" 0.03) &&
    result d12 PASS "cpu vs cuda: $msg" || result d12 FAIL "${msg:-a run failed} (d12_*.log)"
fi

if stage_on ranks; then
  banner ranks
  R=(--model tiny --batch 4 --seq 128 --device cuda)
  "$MC" "${TRAIN[@]}" "${R[@]}" --steps 20 --grad-accum 2 --metrics "$OUT/ranks_accum.jsonl" >"$OUT/ranks_accum.log" 2>&1 &&
    "$BIN/mpirun" --oversubscribe -np 2 "$MC" "${TRAIN[@]}" "${R[@]}" --steps 20 --comm mpi \
      --metrics "$OUT/ranks_np2.jsonl" >"$OUT/ranks_np2.log" 2>&1 &&
    msg=$(compare_losses "$OUT/ranks_accum.jsonl" "$OUT/ranks_np2.jsonl" 0.01) &&
    grep -q "comm mpi+staging, 2 ranks" "$OUT/ranks_np2.log" &&
    result ranks PASS "2 ranks on one GPU (staged MPI) vs 1 rank accum 2: $msg" ||
    result ranks FAIL "${msg:-a run failed} (ranks_*.log)"
  msg=""
  "$BIN/mpirun" -np 1 "$MC" "${TRAIN[@]}" "${R[@]}" --steps 10 --comm nccl --metrics "$OUT/nccl.jsonl" \
    >"$OUT/nccl.log" 2>&1 && grep -q "comm nccl" "$OUT/nccl.log" &&
    result nccl PASS "$(grep '^NCCL' "$OUT/nccl.log"); $(tail -n 1 "$OUT/nccl.log")" ||
    result nccl FAIL "--comm nccl run failed (nccl.log)"
fi

if stage_on bench; then
  banner bench
  gpt2_data
  TOTAL=$((BENCH_STEPS + SKIP))
  "$MC" train --device cuda --data "$OUT/gpt2data" --model d12 --batch 16 --seq 1024 --steps "$TOTAL" \
    --ckpt-dir "" --val-every 0 --log-every 5 --metrics "$OUT/bench_mc.jsonl" >"$OUT/bench_mc.log" 2>&1
  mc_rc=$?
  python3 "$ROOT/share/minicolossus/scripts/bench_pytorch.py" --model d12 --batch 16 --seq 1024 \
    --steps "$BENCH_STEPS" --warmup "$SKIP" >"$OUT/bench_torch.json" 2>"$OUT/bench_torch.log"
  torch_rc=$?
  python3 - "$OUT" "$mc_rc" "$torch_rc" "$SKIP" <<'PY' | tee "$OUT/bench_table.txt"
import json, os, sys
out, mc_rc, torch_rc, skip = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = {}
if mc_rc == 0:
    recs = [json.loads(l) for l in open(os.path.join(out, "bench_mc.jsonl")) if l.strip()][skip:]
    n = len(recs)
    rows["minicolossus"] = {"steps": n, "ms": sum(r["ms"] for r in recs) / n,
                            "tokens_per_s": sum(r["tokens_per_s"] for r in recs) / n,
                            "mfu": sum(r["mfu"] for r in recs) / n,
                            "peak_mem_mb": max(r.get("peak_mem_mb", 0.0) for r in recs), "loss": recs[-1]["loss"]}
if torch_rc == 0:
    rows["pytorch"] = json.loads([l for l in open(os.path.join(out, "bench_torch.json")) if l.startswith("{")][-1])
print("d12, batch 16 x seq 1024, bf16; mean over steady-state steps; MFU against 989 TFLOP/s")
print(f"{'impl':<14} {'steps':>5} {'ms/step':>9} {'tok/s':>11} {'MFU':>7} {'peak MiB':>9} {'loss':>8}")
for name, r in rows.items():
    print(f"{name:<14} {r['steps']:>5} {r['ms']:>9.1f} {r['tokens_per_s']:>11.0f} {100 * r['mfu']:>6.1f}% "
          f"{r['peak_mem_mb']:>9.0f} {r['loss']:>8.4f}")
if len(rows) == 2:
    print(f"minicolossus / pytorch tokens/s: {rows['minicolossus']['tokens_per_s'] / rows['pytorch']['tokens_per_s']:.3f}")
json.dump(rows, open(os.path.join(out, "bench.json"), "w"), indent=1)
PY
  [ $mc_rc -eq 0 ] && [ $torch_rc -eq 0 ] && result bench PASS "$(tail -n 1 "$OUT/bench_table.txt")" ||
    result bench FAIL "minicolossus rc $mc_rc, pytorch rc $torch_rc (bench_*.log)"
fi

if stage_on simulate; then
  banner simulate
  msg=""
  # The simulator's GPU profiles have never met a GPU: predict the bench run before reading it, then
  # calibrate on it (the efficiencies it prints are what hardware.cpp's profile should hold).
  hw=h100
  nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | grep -q H200 && hw=h200
  SIM=(simulate --hardware "$hw" --model d12 --seq 1024 --batch 16 --gpus 1 --json)
  if [ -s "$OUT/bench_mc.jsonl" ]; then
    "$MC" "${SIM[@]}" >"$OUT/simulate_pred.json" 2>"$OUT/simulate.log" &&
      "$MC" "${SIM[@]}" --calibrate "$OUT/bench_mc.jsonl" >"$OUT/simulate_calib.json" 2>>"$OUT/simulate.log" &&
      msg=$(python3 - "$OUT" "$SKIP" <<'PY'
import json, os, sys
out, skip = sys.argv[1], int(sys.argv[2])
recs = [json.loads(l) for l in open(os.path.join(out, "bench_mc.jsonl")) if l.strip()][skip:]
ms = sum(r["ms"] for r in recs) / len(recs)
fb = sum(r["fwd_bwd_ms"] for r in recs) / len(recs)
opt = sum(r["opt_ms"] for r in recs) / len(recs)
mem = max(r["peak_mem_mb"] for r in recs) / 1024
p = json.load(open(os.path.join(out, "simulate_pred.json")))
c = json.load(open(os.path.join(out, "simulate_calib.json")))
r = p["rows"][0]
print(f"{p['hardware']['name']} uncalibrated: step {r['step_ms']:.1f} ms predicted vs {ms:.1f} measured "
      f"({100 * (r['step_ms'] - ms) / ms:+.1f}%), compute {r['compute_ms']:.1f} vs fwd_bwd {fb:.1f}, optimizer "
      f"{r['optimizer_ms']:.1f} vs {opt:.1f}, memory {r['mem_gib_per_gpu']:.1f} vs peak {mem:.1f} GiB; "
      f"{'; '.join(c['calibration'])}")
PY
) && result simulate PASS "$msg" || result simulate FAIL "${msg:-simulate failed} (simulate.log)"
  else
    result simulate FAIL "no bench_mc.jsonl: run the bench stage first"
  fi
fi

if stage_on profile; then
  banner profile
  # One d12 step (forward, backward, AdamW) at the benchmark's shape; ncu times every kernel alone.
  gpt2_data
  if ! command -v ncu >/dev/null; then
    result profile FAIL "ncu not found"
  else
    ncu --metrics gpu__time_duration.sum --csv --page raw --print-kernel-base function --log-file "$OUT/profile.csv" \
      "$MC" train --device cuda --data "$OUT/gpt2data" --model d12 --batch 16 --seq 1024 --steps 1 --ckpt-dir "" \
      --val-every 0 >"$OUT/profile.log" 2>&1
    rc=$?
    python3 - "$OUT/profile.csv" <<'PY' | tee "$OUT/profile_table.txt"
import csv, collections, sys
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
hdr = next(i for i, r in enumerate(rows) if "Kernel Name" in r and "gpu__time_duration.sum" in r)
name_i, t_i = rows[hdr].index("Kernel Name"), rows[hdr].index("gpu__time_duration.sum")
unit = rows[hdr + 1][t_i] if hdr + 1 < len(rows) else ""
scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "second": 1e3}.get(unit, 1e-6)
tot, cnt = collections.Counter(), collections.Counter()
for r in rows[hdr + 1:]:
    try:
        t = float(r[t_i].replace(",", "")) * scale
    except (ValueError, IndexError):
        continue
    name = r[name_i].split("(")[0][:60]
    tot[name] += t
    cnt[name] += 1
total = sum(tot.values())
print(f"one d12 step (B16 T1024), kernels timed one by one by ncu: {total:.1f} ms GPU time in {sum(cnt.values())} launches")
print(f"{'kernel':<60} {'calls':>5} {'ms':>8} {'share':>6}")
for name, t in tot.most_common(20):
    print(f"{name:<60} {cnt[name]:>5} {t:>8.2f} {100 * t / total:>5.1f}%")
PY
    [ $rc -eq 0 ] && [ -s "$OUT/profile_table.txt" ] && result profile PASS "$(head -n 1 "$OUT/profile_table.txt")" ||
      result profile FAIL "ncu rc $rc (profile.log)"
  fi
fi

if stage_on peers; then
  banner peers
  SCRIPTS=$ROOT/share/minicolossus/scripts
  export MC_GPT2_TIKTOKEN=$ROOT/share/minicolossus/gpt2.tiktoken
  python3 "$SCRIPTS/check_tokenizer.py" --minicolossus "$MC" --ranks "$MC_GPT2_TIKTOKEN" \
    --text "$ROOT/share/minicolossus/kjv.txt" >"$OUT/peers_tokenizer.log" 2>&1
  tok_rc=$?
  P=$OUT/peers
  rm -rf "$P" && mkdir -p "$P"
  "$MC" train --data "$CORPUS" --model tiny --steps 60 --seq 128 --val-every 0 --ckpt-dir "$P/ck" \
    >"$P/train.log" 2>&1 &&
    python3 "$SCRIPTS/check_hf_export.py" --mc "$MC" --ckpt "$P/ck/ckpt_00000060.bin" --data "$CORPUS" \
      --work "$P/work" --max-seqs 64 >"$OUT/peers_hf.log" 2>&1
  hf_rc=$?
  # check_hf_export.py passes without torch/transformers (a note, not a failure); here they must have run.
  [ $tok_rc -eq 0 ] && [ $hf_rc -eq 0 ] && grep -q "^ok   - GPT2LMHeadModel loss matches eval" "$OUT/peers_hf.log" &&
    result peers PASS "tiktoken: $(tail -n 1 "$OUT/peers_tokenizer.log"); hf: $(tail -n 1 "$OUT/peers_hf.log")" ||
    result peers FAIL "tokenizer rc $tok_rc, hf rc $hf_rc, transformers' check $(grep -c '^ok   - GPT2LMHeadModel' \
      "$OUT/peers_hf.log" 2>/dev/null)/1 (peers_tokenizer.log, peers_hf.log)"
fi

echo "gpu-check: $failed stage(s) failed; logs in $OUT"
[ "$failed" -eq 0 ]
