#!/usr/bin/env bash
# Predicted vs measured (a benchmark, not a test): calibrates `minicolossus simulate --hardware cpu` on a
# 1-rank d6 run and a 2-rank bench-allreduce table, then measures data-parallel runs NOT used for the
# calibration (2-4 ranks, overlap off, other buckets, ZeRO-1) and predicts each; prints a fixed table and
# the mean/max step-time error. One rank is one core (OMP_NUM_THREADS=1 for every run). Raw metrics,
# outputs and predictions stay in $OUT_DIR (default: a new temporary directory, printed).
# --cluster adds runs across 2 hosts of the namespace test bed (scripts/cluster/; root), with the link
# unshaped and rate-limited: calibrated on a bench-allreduce table taken across the same link.
# Usage: bash scripts/bench_simulate.sh [--quick] [--cluster] [steps]   (BUILD_DIR picks the build, default build)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
CLUSTER=0
STEPS=8
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    --cluster) CLUSTER=1 ;;
    ''|*[!0-9]*) echo "bench_simulate.sh: unknown argument '$a' (usage: [--quick] [steps])" >&2; exit 2 ;;
    *) STEPS=$a ;;
  esac
done
[ "$QUICK" -eq 1 ] && ! [[ " $* " =~ \ [0-9]+\  ]] && STEPS=4
[ "$STEPS" -ge 3 ] || { echo "bench_simulate.sh: steps $STEPS: need at least 3 (the first 2 are warm-up)" >&2; exit 2; }
BUILD_DIR=${BUILD_DIR:-build}
bash scripts/setup.sh
BUILD_DIR=$BUILD_DIR bash scripts/build.sh >/dev/null
MC=$PWD/$BUILD_DIR/minicolossus
W=${OUT_DIR:-$(mktemp -d -t bench_simulate.XXXXXX)}
mkdir -p "$W"
echo "results in $W"
root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
mpi() { local np=$1; shift; mpirun "${root[@]}" --oversubscribe -np "$np" -x OMP_NUM_THREADS=1 "$@"; }
TRAIN=(train --model d6 --batch 2 --seq 256 --steps "$STEPS" --ckpt-dir "" --val-every 0 --check-every 0
       --log-every 1000)

# busy_s: CPU seconds the whole machine has spent busy since boot (user, nice, system, irq, softirq, steal).
busy_s() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{printf "%.2f\n", ($2+$3+$4+$7+$8+$9) / hz}' /proc/stat; }
# measure NAME RANKS FLAGS...: one training run, its metrics in $W/NAME.jsonl, and in $W/NAME.time its wall,
# user and system seconds and the machine's busy CPU seconds meanwhile: what the machine did beyond our
# ranks is other processes competing for the cores (the table warns when it is noticeable).
measure() {
  local name=$1 np=$2; shift 2
  echo "measuring $name: $np rank(s) $*"
  local TIMEFORMAT="%R %U %S" b0 b1
  b0=$(busy_s)
  if ! { time mpi "$np" "$MC" "${TRAIN[@]}" "$@" --metrics "$W/$name.jsonl" >"$W/$name.txt" 2>&1; } 2>"$W/$name.time"
  then
    echo "bench_simulate.sh: run $name failed; see $W/$name.txt:" >&2
    tail -5 "$W/$name.txt" >&2
    exit 1
  fi
  b1=$(busy_s)
  echo "$b0 $b1" >>"$W/$name.time"
}

# ---- calibration set ----------------------------------------------------------------------------
measure calib 1
echo "measuring bench-allreduce on 2 ranks"
mpi 2 "$MC" bench-allreduce --max-bytes 64M >"$W/bench2.txt" 2>&1 \
  || { echo "bench_simulate.sh: bench-allreduce failed; see $W/bench2.txt" >&2; exit 1; }
VOCAB=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["vocab"])' "$W/calib.jsonl")

# ---- prediction set: name | ranks | flags (the same flags for train and simulate) ----------------
if [ "$QUICK" -eq 1 ]; then
  RUNS=("np2|2|" "np2_no_overlap|2|--no-overlap" "np4|4|")
else
  RUNS=("np2|2|" "np3|3|" "np4|4|" "np2_no_overlap|2|--no-overlap" "np2_bucket1|2|--bucket-mb 1"
        "np2_bucket8|2|--bucket-mb 8" "np2_zero1|2|--zero 1" "np4_zero1|4|--zero 1")
fi
HAVE_SIM=0
"$MC" simulate --help >/dev/null 2>&1 && HAVE_SIM=1
[ "$HAVE_SIM" -eq 1 ] || echo "simulate not available in $MC: measuring only"
for run in "${RUNS[@]}"; do
  IFS='|' read -r name np flags <<<"$run"
  # shellcheck disable=SC2086  # flags are words
  measure "$name" "$np" $flags
  [ "$HAVE_SIM" -eq 1 ] || continue
  # shellcheck disable=SC2086
  "$MC" simulate --hardware cpu --model d6 --vocab "$VOCAB" --seq 256 --batch 2 --gpus "$np" $flags \
    --calibrate "$W/calib.jsonl" --calibrate-comm "$W/bench2.txt" --json >"$W/$name.sim.json" 2>"$W/$name.sim.err" \
    || echo "simulate failed for $name: $(head -c 300 "$W/$name.sim.err")"
done

# ---- the table ------------------------------------------------------------------------------------
printf '%s\n' "${RUNS[@]}" >"$W/runs.txt"
python3 - "$W" "$HAVE_SIM" <<'PY' | tee "$W/table.txt"
import json, os, sys
w, have_sim = sys.argv[1], sys.argv[2] == "1"
def avg(path, key):
    rows = [json.loads(l) for l in open(path)][2:]  # the first 2 steps are warm-up
    return sum(r[key] for r in rows) / len(rows), len(rows)
calib_ms, n = avg(os.path.join(w, "calib.jsonl"), "ms")
calib_fb, _ = avg(os.path.join(w, "calib.jsonl"), "fwd_bwd_ms")
print(f"# d6, batch 2, seq 256, 1 core per rank; {n} steps averaged per run after 2 warm-up steps")
print(f"# calibration: 1 rank {calib_ms:.1f} ms/step (fwd_bwd {calib_fb:.1f} ms), bench-allreduce on 2 ranks")
hdr = ("run", "meas ms", "pred ms", "error %", "meas exp ms", "pred exp ms", "meas fwd_bwd", "pred compute")
fmt = "{:<26} {:>9} {:>9} {:>8} {:>12} {:>12} {:>13} {:>13}"
print(fmt.format(*hdr))
errs, calib_lines, busy = [], None, []
def other_cores(name):
    """Cores' worth of CPU that processes other than the run's used on average while it ran."""
    wall, user, sys_, b0, b1 = open(os.path.join(w, name + ".time")).read().split()
    return max(0.0, float(b1) - float(b0) - float(user) - float(sys_)) / float(wall)
for line in open(os.path.join(w, "runs.txt")):
    name, np, flags = line.rstrip("\n").split("|")
    ms, _ = avg(os.path.join(w, name + ".jsonl"), "ms")
    exp, _ = avg(os.path.join(w, name + ".jsonl"), "comm_exposed_ms")
    fb, _ = avg(os.path.join(w, name + ".jsonl"), "fwd_bwd_ms")
    pred = ["-", "-", "-", "-"]
    sim_path = os.path.join(w, name + ".sim.json")
    if have_sim:
        pred = ["failed"] + ["-"] * 3
        try:
            sim = json.load(open(sim_path))
            row = next(r for r in sim["rows"] if r["gpus"] == int(np))
            err = 100.0 * (row["step_ms"] - ms) / ms
            errs.append(abs(err))
            pred = [f"{row['step_ms']:.1f}", f"{err:+.1f}", f"{row['exposed_comm_ms']:.2f}", f"{row['compute_ms']:.1f}"]
            calib_lines = calib_lines or sim.get("calibration")
        except (OSError, ValueError, KeyError, StopIteration):
            pass
    label = f"{np} ranks {flags}".strip()
    other = other_cores(name)
    if other > 0.2:
        busy.append(f"{label} ({other:.1f})")
    print(fmt.format(label, f"{ms:.1f}", pred[0], pred[1], f"{exp:.2f}", pred[2], f"{fb:.1f}", pred[3]))
if errs:
    print(f"mean |error| {sum(errs) / len(errs):.1f}%, max {max(errs):.1f}% (step time, {len(errs)} runs)")
elif have_sim:
    print("no predictions (every simulate call failed: see *.sim.err)")
else:
    print("simulate not available: measured columns only")
other = other_cores("calib")
if other > 0.2:
    busy.insert(0, f"the 1-rank calibration ({other:.1f})")
if busy:
    print(f"# warning: other processes competed for the cores (average cores they used) during: {', '.join(busy)}")
for c in calib_lines or []:
    print(f"# simulate calibration: {c}")
PY
# ---- across hosts (--cluster): 2 namespace hosts x 1 rank, each link setting calibrated on its own table -----
if [ "$CLUSTER" -eq 1 ] && [ "$HAVE_SIM" -eq 1 ]; then
  cl=$PWD/scripts/cluster
  bash "$cl/netns.sh" gc
  cdir=$(MC_CLUSTER_SLOTS=1 bash "$cl/netns.sh" up 2 $$) || { echo "bench_simulate.sh: no test bed: $cdir" >&2; exit 1; }
  trap 'bash "$cl/netns.sh" down $$' EXIT
  hosts=$(awk '{print $1}' "$cdir/hostfile")
  echo "# across 2 namespace hosts x 1 rank (TCP through a bridge; rates shaped by tbf on each host's egress)" \
    | tee -a "$W/table.txt"
  printf '%-16s %9s %9s %8s %12s %12s\n' "link" "meas ms" "pred ms" "error %" "meas exp ms" "pred exp ms" \
    | tee -a "$W/table.txt"
  for setting in "none|" "rate 1gbit|tbf rate 1gbit burst 125000 latency 50ms" \
                 "rate 300mbit|tbf rate 300mbit burst 65536 latency 50ms"; do
    label=${setting%%|*} q=${setting#*|} tag=x_${label// /_}
    for h in $hosts; do
      # shellcheck disable=SC2086  # qdisc arguments are words; "off" removes the shaping
      bash "$cl/netns.sh" qdisc "$h" ${q:-off} || { echo "bench_simulate.sh: tc qdisc ${q:-off} failed on $h" >&2; exit 1; }
    done
    echo "measuring across hosts, link $label"
    OMP_NUM_THREADS=1 bash "$cl/mpirun.sh" "$cdir" -np 2 -x OMP_NUM_THREADS "$MC" bench-allreduce --max-bytes 32M \
      --iters 5 --warmup 2 >"$W/$tag.bench.txt" 2>&1 \
      || { echo "bench_simulate.sh: bench-allreduce across hosts failed: $(tail -3 "$W/$tag.bench.txt")" >&2; exit 1; }
    OMP_NUM_THREADS=1 bash "$cl/mpirun.sh" "$cdir" -np 2 -x OMP_NUM_THREADS "$MC" "${TRAIN[@]}" \
      --metrics "$W/$tag.jsonl" >"$W/$tag.txt" 2>&1 \
      || { echo "bench_simulate.sh: training across hosts failed: $(tail -3 "$W/$tag.txt")" >&2; exit 1; }
    "$MC" simulate --hardware cpu --model d6 --vocab "$VOCAB" --seq 256 --batch 2 --gpus 2 \
      --calibrate "$W/calib.jsonl" --calibrate-comm "$W/$tag.bench.txt" --json >"$W/$tag.sim.json"
    python3 - "$W" "$tag" "$label" <<'PY' | tee -a "$W/table.txt"
import json, os, sys
w, tag, label = sys.argv[1:]
rows = [json.loads(l) for l in open(os.path.join(w, tag + ".jsonl"))][2:]
ms = sum(r["ms"] for r in rows) / len(rows)
exp = sum(r["comm_exposed_ms"] for r in rows) / len(rows)
p = json.load(open(os.path.join(w, tag + ".sim.json")))["rows"][0]
print(f"{label:<16} {ms:>9.1f} {p['step_ms']:>9.1f} {100 * (p['step_ms'] - ms) / ms:>+8.1f} {exp:>12.2f} "
      f"{p['exposed_comm_ms']:>12.2f}")
PY
  done
fi

# ---- against published figures (the model alone, no measurement) ---------------------------------
if [ "$HAVE_SIM" -eq 1 ]; then
  "$MC" simulate --hardware h100 --model d12 --seq 1024 --batch 64 --gpus 8 --json >"$W/llmc.sim.json"
  "$MC" simulate --hardware h100 --gpus 8 --collectives --json >"$W/nccl.sim.json"
  python3 - "$W" <<'PY' | tee -a "$W/table.txt"
import json, os, sys
w = sys.argv[1]
step = json.load(open(os.path.join(w, "llmc.sim.json")))["rows"][0]
coll = json.load(open(os.path.join(w, "nccl.sim.json")))["rows"]
big = {r["algo"]: r["busbw_gbs"] for r in coll if r["bytes"] == 1024 ** 3}
print("# the built-in h100 profile (uncalibrated) against published figures")
print(f"{'figure':<58} {'published':>10} {'model':>10}")
print(f"{'llm.c GPT-2 124M, 8xH100, 64 x 1024 tokens/GPU: ms/step':<58} {'~140':>10} {step['step_ms']:>10.1f}")
print(f"{'nccl-tests all_reduce 8xH100, 1 GiB, ring: busbw GB/s':<58} {'~370':>10} {big['ring']:>10.1f}")
print(f"{'nccl-tests all_reduce 8xH100, 1 GiB, NVLS: busbw GB/s':<58} {'~480':>10} {big['hier']:>10.1f}")
PY
fi
echo "results in $W"
