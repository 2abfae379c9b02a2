# A rank that hangs (here: stopped with SIGSTOP) is not noticed by the launcher, and its peers would
# wait in the next collective forever; the watchdog (--watchdog-s) ends the whole job instead.
source "$(dirname "$0")/lib.bash"
command -v mpirun >/dev/null || exit 77
export OMP_NUM_THREADS=1
make_data
mpirun --allow-run-as-root --oversubscribe -np 2 "$MC" train --data "$WORK/data" --steps 100000 --batch 2 --seq 32 \
  --ckpt-dir "" --val-every 0 --watchdog-s 3 > run.txt 2>&1 &
pid=$!
wait_for_line '^step *20/' run.txt
victim=$(rank_pid)
[ -n "$victim" ] || { fail "no rank process found"; finish; }
start=$(date +%s)
kill -STOP "$victim"
if ! wait_gone $pid 60; then
  fail "job still running 60 s after a rank was stopped"; kill_ranks; kill -KILL $pid; finish
fi
wait $pid; rc=$?
took=$(( $(date +%s) - start ))
kill_ranks
[ $rc -ne 0 ] && pass "job ended (exit $rc) ${took}s after a rank was stopped" || fail "exit code 0"
grep -q "watchdog: no training progress" run.txt && pass "watchdog reported it: $(grep -m1 "watchdog: no training progress" run.txt)" \
  || fail "no watchdog message: $(tail -3 run.txt)"
finish
