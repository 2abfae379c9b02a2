# A rank that hangs (here: stopped with SIGSTOP) is not noticed by the launcher, and its peers would
# wait in the next collective forever; the watchdog (--watchdog-s) ends the whole job instead.
source "$(dirname "$0")/lib.bash"
command -v mpirun >/dev/null || exit 77
export OMP_NUM_THREADS=1
make_data
mpirun --allow-run-as-root --oversubscribe -np 2 "$MC" train --data "$WORK/data" --steps 100000 --batch 2 --seq 32 \
  --ckpt-dir "" --val-every 0 --watchdog-s 3 > run.txt 2>&1 &
pid=$!
for i in $(seq 1 200); do grep -q '^step *20/' run.txt && break; sleep 0.1; done
victim=$(pgrep -f "^$MC train --data $WORK/data" | tail -1)
[ -n "$victim" ] || { fail "no rank process found"; finish; }
start=$(date +%s)
kill -STOP "$victim"
for i in $(seq 1 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then
  fail "job still running 60 s after a rank was stopped"
  pkill -KILL -f "^$MC train --data $WORK/data"; kill -KILL $pid; finish
fi
wait $pid; rc=$?
took=$(( $(date +%s) - start ))
pkill -KILL -f "^$MC train --data $WORK/data" 2>/dev/null
[ $rc -ne 0 ] && pass "job ended (exit $rc) ${took}s after a rank was stopped" || fail "exit code 0"
grep -q "watchdog: no training progress" run.txt && pass "watchdog reported it: $(grep -m1 "watchdog: no training progress" run.txt)" \
  || fail "no watchdog message: $(tail -3 run.txt)"
finish
