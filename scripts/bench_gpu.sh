#!/usr/bin/env bash
# GPU throughput benchmark (not a test), everything in one call on the GPU machine:
#   1. configure + build into build-gpu (sm_90, MPI if found), 2. ctest -L gpu,
#   3. minicolossus train --device cuda on random GPT-2-vocabulary shards, 4. the PyTorch peer
#   (scripts/bench_pytorch.py) with the same model/batch/seq, 5. a side-by-side table with the ratio.
# Logs and results go to ${OUT:-out}/. Knobs (environment): MODEL (d12), BATCH (16), SEQ (1024),
# STEPS (30 measured), SKIP (5 first steps ignored), PEAK_TFLOPS (989), SKIP_TESTS=1, SKIP_TORCH=1.
# Exit status: 0 all good; 1 if any stage failed (the summary names it).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
MODEL=${MODEL:-d12}
BATCH=${BATCH:-16}
SEQ=${SEQ:-1024}
STEPS=${STEPS:-30}
SKIP=${SKIP:-5}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
BUILD=build-gpu
FAILED=()

stage() { echo "== $* ($(date +%H:%M:%S))"; }
die() { echo "bench_gpu.sh: FAILED at stage: $1 (log: $2)" >&2; tail -n 40 "$2" >&2 || true; exit 1; }

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "(nvidia-smi not available)" > "$OUT/nvidia-smi.txt"

stage "configure"
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DMC_MPI=AUTO \
  -DMC_CUDA=ON > "$OUT/configure.log" 2>&1 || die configure "$OUT/configure.log"
grep "minicolossus:" "$OUT/configure.log" || true

stage "build"
T0=$(date +%s)
cmake --build "$BUILD" -j "$(nproc)" > "$OUT/build.log" 2>&1 || die build "$OUT/build.log"
echo "built in $(( $(date +%s) - T0 )) s"

if [[ "${SKIP_TESTS:-0}" != 1 ]]; then
  stage "ctest -L gpu"
  if (cd "$BUILD" && ctest -L gpu --output-on-failure) > "$OUT/ctest_gpu.log" 2>&1; then
    tail -n 3 "$OUT/ctest_gpu.log"
  else
    echo "GPU tests FAILED (log: $OUT/ctest_gpu.log):"
    grep -E "Failed|\*\*\*|tests passed" "$OUT/ctest_gpu.log" | head -40 || true
    FAILED+=("ctest -L gpu")
  fi
fi

stage "data (random GPT-2-vocabulary shards)"
python3 - "$OUT/data" <<'PY' || die data "$OUT/data"
import os, random, struct, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
rnd = random.Random(0)
for name, n in (("train_000000.bin", 4_000_000), ("val_000000.bin", 100_000)):
    hdr = [0] * 256; hdr[0] = 20240520; hdr[1] = 1; hdr[2] = n
    with open(os.path.join(d, name), "wb") as f:
        f.write(struct.pack("<256i", *hdr))
        f.write(struct.pack("<%dH" % n, *(rnd.randrange(50257) for _ in range(n))))
PY

TOTAL=$((STEPS + SKIP))
stage "minicolossus train --device cuda --model $MODEL --batch $BATCH --seq $SEQ --steps $TOTAL"
rm -f "$OUT/minicolossus.jsonl"
MC_OK=1
if ! "$BUILD/minicolossus" train --device cuda --data "$OUT/data" --model "$MODEL" --batch "$BATCH" --seq "$SEQ" \
    --steps "$TOTAL" --peak-tflops "$PEAK_TFLOPS" --ckpt-dir "" --val-every 0 --log-every 5 \
    --metrics "$OUT/minicolossus.jsonl" > "$OUT/train.log" 2>&1; then
  echo "minicolossus train FAILED (log: $OUT/train.log):"
  tail -n 20 "$OUT/train.log"
  FAILED+=("minicolossus train")
  MC_OK=0
else
  tail -n 3 "$OUT/train.log"
fi

TORCH_OK=0
if [[ "${SKIP_TORCH:-0}" != 1 ]]; then
  stage "PyTorch peer (scripts/bench_pytorch.py)"
  if python3 scripts/bench_pytorch.py --model "$MODEL" --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" \
      --warmup "$SKIP" --peak-tflops "$PEAK_TFLOPS" > "$OUT/pytorch.json" 2> "$OUT/pytorch.log"; then
    TORCH_OK=1
    tail -n 1 "$OUT/pytorch.json"
  else
    echo "PyTorch benchmark FAILED (log: $OUT/pytorch.log):"
    tail -n 20 "$OUT/pytorch.log"
    FAILED+=("bench_pytorch.py")
  fi
fi

stage "summary"
python3 - "$OUT" "$MC_OK" "$TORCH_OK" "$SKIP" "$MODEL" "$BATCH" "$SEQ" <<'PY'
import json, os, sys
out, mc_ok, torch_ok, skip = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", int(sys.argv[4])
model, batch, seq = sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
rows = {}
if mc_ok:
    recs = [json.loads(l) for l in open(os.path.join(out, "minicolossus.jsonl")) if l.strip()]
    recs = [r for r in recs if "tokens_per_s" in r][skip:]  # steady state: skip the first steps
    if recs:
        n = len(recs)
        rows["minicolossus"] = {
            "steps": n,
            "ms": sum(r["ms"] for r in recs) / n,
            "tokens_per_s": sum(r["tokens_per_s"] for r in recs) / n,
            "mfu": sum(r["mfu"] for r in recs) / n,
            "peak_mem_mb": max(r.get("peak_mem_mb", 0.0) for r in recs),
            "loss": recs[-1]["loss"],
        }
if torch_ok:
    lines = [l for l in open(os.path.join(out, "pytorch.json")) if l.strip().startswith("{")]
    rows["pytorch"] = json.loads(lines[-1])
print(f"model {model}  batch {batch}  seq {seq}  (mean over steady-state steps)")
print(f"{'impl':<14} {'steps':>5} {'ms/step':>9} {'tok/s':>11} {'MFU':>7} {'peak MiB':>9} {'loss':>8}")
for name, r in rows.items():
    print(f"{name:<14} {r['steps']:>5} {r['ms']:>9.1f} {r['tokens_per_s']:>11.0f} {100 * r['mfu']:>6.1f}% "
          f"{r['peak_mem_mb']:>9.0f} {r['loss']:>8.4f}")
summary = {"model": model, "batch": batch, "seq": seq, "results": rows}
if "minicolossus" in rows and "pytorch" in rows:
    ratio = rows["minicolossus"]["tokens_per_s"] / rows["pytorch"]["tokens_per_s"]
    summary["ratio_tokens_per_s"] = ratio
    print(f"minicolossus / pytorch tokens/s: {ratio:.3f}")
json.dump(summary, open(os.path.join(out, "bench_summary.json"), "w"), indent=1)
PY

if ((${#FAILED[@]})); then
  echo "bench_gpu.sh: failed stages: ${FAILED[*]}" >&2
  exit 1
fi
echo "bench_gpu.sh: all stages passed; logs in $OUT/"
