#!/usr/bin/env bash
# CPU throughput benchmark (not a test): tok/s of d12 (GPT-2 124M) at batch 4 x seq 64, and of the
# tiny default run. Uses random-ish GPT-2-vocabulary shards made here, so no download is needed.
# Prints a fixed table; run from anywhere: bash scripts/bench_cpu.sh [steps]
# MC=path/to/minicolossus measures that binary instead of building build/minicolossus.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-12}
if [ -z "${MC:-}" ]; then
  bash scripts/setup.sh
  bash scripts/build.sh >/dev/null
  MC=build/minicolossus
fi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# d12 needs a GPT-2-sized vocabulary: write llm.c-format shards of pseudo-random tokens < 50257.
python3 - "$W/gpt2" <<'PY'
import os, struct, sys, random
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
random.seed(0)
for name, n in (("train_000000.bin", 200000), ("val_000000.bin", 20000)):
    hdr = [0] * 256; hdr[0] = 20240520; hdr[1] = 1; hdr[2] = n
    toks = [random.randrange(50257) for _ in range(n)]
    with open(os.path.join(d, name), "wb") as f:
        f.write(struct.pack("<256i", *hdr)); f.write(struct.pack("<%dH" % n, *toks))
PY
run() {  # name, then train flags; prints the mean tok/s of the steps after the first two
  local name=$1; shift
  $MC train "$@" --ckpt-dir "" --val-every 0 --metrics "$W/$name.jsonl" --log-every 1000 >/dev/null
  python3 - "$W/$name.jsonl" "$name" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][2:]
tps = sum(r["tokens_per_s"] for r in rows) / len(rows)
ms = sum(r["ms"] for r in rows) / len(rows)
mfu = sum(r["mfu"] for r in rows) / len(rows)
print(f"{sys.argv[2]:<28} {len(rows):>5} {ms:>10.1f} {tps:>10.1f} {100*mfu:>7.1f}%")
PY
}
echo "threads: ${OMP_NUM_THREADS:-$(nproc)}  (MFU against --peak-tflops 0.19, the 2-core fp32 peak)"
printf "%-28s %5s %10s %10s %8s\n" "config" "steps" "ms/step" "tok/s" "MFU"
run "d12 B4 T64" --data "$W/gpt2" --model d12 --batch 4 --seq 64 --steps "$STEPS"
run "tiny default (B8 T128)" --steps 30
