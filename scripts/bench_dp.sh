#!/usr/bin/env bash
# Data-parallel benchmark (not a test): d6 on NP ranks (default 2) of the CPU trainer, for several
# --bucket-mb values and with the overlap turned off, reporting step time and the exposed share of
# communication (time waiting for gradient reductions after backward), averaged after 2 warm-up
# steps. Then the bench-allreduce table. Usage: bash scripts/bench_dp.sh [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-8}
NP=${NP:-2}
bash scripts/setup.sh
bash scripts/build.sh >/dev/null
MC=$PWD/build/minicolossus
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
MPI=(mpirun "${root[@]}" --oversubscribe -np "$NP" -x OMP_NUM_THREADS=1)
printf "%-22s %6s %10s %12s %9s %9s\n" "d6, $NP ranks" "steps" "ms/step" "exposed ms" "exposed" "tok/s"
for variant in "--bucket-mb 1" "--bucket-mb 4" "--bucket-mb 8" "--bucket-mb 25" "--bucket-mb 8 --no-overlap"; do
  "${MPI[@]}" "$MC" train --model d6 --batch 2 --seq 256 --steps "$STEPS" $variant --ckpt-dir "" --val-every 0 \
    --log-every 1000 --metrics "$W/m.jsonl" >/dev/null
  python3 - "$W/m.jsonl" "$variant" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][2:]
avg = lambda k: sum(r[k] for r in rows) / len(rows)
print(f"{sys.argv[2]:<22} {len(rows):>6} {avg('ms'):>10.1f} {avg('comm_exposed_ms'):>12.2f} "
      f"{100*avg('comm_exposed_frac'):>8.2f}% {avg('tokens_per_s'):>9.0f}")
PY
done
echo
"${MPI[@]}" "$MC" bench-allreduce --max-bytes $((64 * 1024 * 1024))
