# A rank that hangs (here: stopped with SIGSTOP) is not noticed by the launcher, and its peers would
# wait in their next collective forever; the watchdog (--watchdog-s) ends the whole job instead, in
# every phase: training steps, start-up, a checkpoint, MPI_Finalize (Note [Watchdog]).
source "$(dirname "$0")/lib.bash"
command -v mpirun >/dev/null || exit 77
export OMP_NUM_THREADS=1
make_data
MPI=(mpirun --allow-run-as-root --oversubscribe -np 2)

# expect_watchdog WHAT: the job in the background as $pid, output in run.txt, stopped at $start.
expect_watchdog() {
  if ! wait_gone $pid 60; then
    fail "$1: job still running 60 s after a rank was stopped"; kill_ranks; kill -KILL $pid; return
  fi
  wait $pid; local rc=$? took=$(( $(date +%s) - start ))
  kill_ranks
  [ $rc -ne 0 ] && pass "$1: job ended (exit $rc) ${took}s after a rank was stopped" || fail "$1: exit code 0"
  [ $took -le 30 ] || fail "$1: took ${took}s (watchdog limit 3 s)"
  grep -q "watchdog: no progress" run.txt && pass "$1: $(grep -m1 "watchdog: no progress" run.txt)" \
    || fail "$1: no watchdog message: $(tail -3 run.txt)"
}

# 1. Stopped from outside in the middle of training.
"${MPI[@]}" "$MC" train --data "$WORK/data" --steps 100000 --batch 2 --seq 32 \
  --ckpt-dir "" --val-every 0 --watchdog-s 3 > run.txt 2>&1 &
pid=$!
wait_for_line '^step *20/' run.txt
victim=$(rank_pid)
[ -n "$victim" ] || { fail "no rank process found"; finish; }
start=$(date +%s)
kill -STOP "$victim"
expect_watchdog "during training"

# 2.-4. Rank 1 stops itself on entering a phase (test hook MC_TEST_STOP_IN, src/dist/watchdog.cpp).
for phase in "start-up (comparing ranks)" "checkpoint" "shutdown (MPI_Finalize)"; do
  start=$(date +%s)
  "${MPI[@]}" -x MC_TEST_STOP_IN="1:$phase" "$MC" train --data "$WORK/data" --steps 3 --batch 2 --seq 32 \
    --ckpt-dir "$WORK/ck_$start" --val-every 0 --watchdog-s 3 > run.txt 2>&1 &
  pid=$!
  expect_watchdog "stopped in $phase"
done
finish
