#!/usr/bin/env bash
# Effective training time under failures: `minicolossus launch` runs a job on NP ranks of this machine
# (oversubscribed, CPU) while a loop kills one random rank with SIGKILL every KILL_S seconds; after
# RUN_S seconds launch is stopped gracefully (SIGTERM: checkpoint, no restart) and its summary gives
# wall time, restarts, productive step time and the effective fraction (Note [Effective training
# time] in src/train/launch.cpp). One row per --ckpt-every value, to show the trade-off: frequent
# checkpoints cost save time, rare ones lose more redone steps per failure.
# usage: scripts/bench_restart.sh [MINICOLOSSUS] [CKPT_EVERY_LIST]   (env: NP=4 RUN_S=300 KILL_S=60
#        MODEL=tiny BATCH=4 SEQ=64 WORK=/tmp/mc_bench_restart); KILL_S=0: no kills (the failure-free baseline).
set -uo pipefail
MC=$(readlink -f "${1:-build/minicolossus}")
LIST=${2:-"10 40 160"}
NP=${NP:-4} RUN_S=${RUN_S:-300} KILL_S=${KILL_S:-60} MODEL=${MODEL:-tiny} BATCH=${BATCH:-4} SEQ=${SEQ:-64}
WORK=${WORK:-/tmp/mc_bench_restart}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -x "$MC" ] || { echo "bench_restart: $MC is not an executable (build first, or pass its path)" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "bench_restart: mpirun not found" >&2; exit 2; }
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
for i in $(seq 1 4000); do echo "line $i: in the beginning was the word, and the word was with the trainer."; done > corpus.txt
"$MC" prepare --input corpus.txt --out data >/dev/null || exit 1

echo "# launch --np $NP, --model $MODEL --batch $BATCH --seq $SEQ, a rank killed every ${KILL_S}s (0: never), ${RUN_S}s per row"
printf "%-11s %8s %9s %6s %12s %10s %10s\n" ckpt_every wall_s restarts steps productive_s effective ms_per_step
for every in $LIST; do
  ck="$WORK/ck_$every"
  "$MC" launch --np "$NP" --max-restarts 1000 --mpirun-args "--allow-run-as-root --oversubscribe" -- \
    --data "$WORK/data" --model "$MODEL" --batch "$BATCH" --seq "$SEQ" --steps 1000000 --val-every 0 \
    --log-every 100 --ckpt-every "$every" --ckpt-dir "$ck" > "launch_$every.txt" 2>&1 &
  lpid=$!
  start=$(date +%s)
  kills=0
  while kill -0 $lpid 2>/dev/null; do
    now=$(date +%s)
    if [ $((now - start)) -ge "$RUN_S" ]; then kill -TERM $lpid; break; fi
    if [ "$KILL_S" -gt 0 ] && [ $((now - start)) -ge $(( (kills + 1) * KILL_S )) ]; then
      mapfile -t ranks < <(pgrep -f "^$MC train --data $WORK/data .*--ckpt-dir $ck")
      if [ ${#ranks[@]} -gt 0 ]; then
        victim=${ranks[$((RANDOM % ${#ranks[@]}))]}
        kill -KILL "$victim" 2>/dev/null && echo "t=$((now - start))s killed rank pid $victim" >> "kills_$every.txt"
      fi
      kills=$((kills + 1))
    fi
    sleep 0.2
  done
  wait $lpid
  s=$(grep "^launch: summary" "launch_$every.txt")
  # "launch: summary: A attempts, R restarts, wall W s, productive step time P s (N steps) = E% effective ..."
  read -r restarts wall prod steps eff < <(echo "$s" | sed -E \
    's/.* ([0-9]+) restarts?, wall ([0-9.]+) s, productive step time ([0-9.]+) s \(([0-9]+) steps\) = ([0-9.]+)%.*/\1 \2 \3 \4 \5/')
  mps=$(awk -v p="$prod" -v n="$steps" 'BEGIN { if (n > 0) printf "%.1f", 1000 * p / n; else print "-" }')
  printf "%-11s %8s %9s %6s %12s %9s%% %10s\n" "$every" "$wall" "$restarts" "$steps" "$prod" "$eff" "$mps"
done
echo "# per-row logs: $WORK/launch_<ckpt_every>.txt, kills_<ckpt_every>.txt"
