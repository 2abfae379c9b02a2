# A rank killed mid-training never hangs the job: mpirun exits non-zero within 30 seconds.
source "$(dirname "$0")/lib.bash"
command -v mpirun >/dev/null || exit 77
export OMP_NUM_THREADS=1
make_data
mpirun --allow-run-as-root --oversubscribe -np 3 "$MC" train --data "$WORK/data" --steps 100000 --batch 2 --seq 32 \
  --ckpt-dir "" --val-every 0 > run.txt 2>&1 &
pid=$!
for i in $(seq 1 200); do grep -q '^step' run.txt && break; sleep 0.1; done
victim=$(pgrep -f "^$MC train --data $WORK/data" | tail -1)
[ -n "$victim" ] || { fail "no rank process found"; finish; }
start=$(date +%s)
kill -KILL "$victim"
for i in $(seq 1 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then
  fail "job still running 30 s after a rank was killed"; pkill -KILL -f "^$MC train --data $WORK/data"; kill -KILL $pid
  finish
fi
wait $pid; rc=$?
took=$(( $(date +%s) - start ))
[ $rc -ne 0 ] && pass "job ended with exit $rc ${took}s after rank pid $victim was killed" || fail "exit code 0 after a rank died"
finish
