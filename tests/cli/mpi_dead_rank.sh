# A rank killed mid-training never hangs the job: mpirun exits non-zero within 30 seconds.
source "$(dirname "$0")/lib.bash"
command -v mpirun >/dev/null || exit 77
export OMP_NUM_THREADS=1
make_data
mpirun --allow-run-as-root --oversubscribe -np 3 "$MC" train --data "$WORK/data" --steps 100000 --batch 2 --seq 32 \
  --ckpt-dir "" --val-every 0 > run.txt 2>&1 &
pid=$!
wait_for_line '^step' run.txt
victim=$(rank_pid)
[ -n "$victim" ] || { fail "no rank process found"; finish; }
start=$(date +%s)
kill -KILL "$victim"
if ! wait_gone $pid 30; then
  fail "job still running 30 s after a rank was killed"; kill_ranks; kill -KILL $pid
  finish
fi
wait $pid; rc=$?
took=$(( $(date +%s) - start ))
[ $rc -ne 0 ] && pass "job ended with exit $rc ${took}s after rank pid $victim was killed" || fail "exit code 0 after a rank died"
finish
