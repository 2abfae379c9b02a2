# Under mpirun, stops that reach ONE rank at awkward moments: during start-up (every rank stops before
# its first step, exit 0, nothing to save), SIGHUP (a graceful stop like SIGTERM: every rank stops after
# the same step with one checkpoint), and a resume of a finished run (every rank has nothing to train).
# A stop is agreed by an all-reduce, so none of these may hang or split the ranks.
source "$(dirname "$0")/lib.bash"
command -v mpirun >/dev/null || exit 77
export OMP_NUM_THREADS=1
make_data
MPI=(mpirun --allow-run-as-root --oversubscribe -np 2)
T=(train --data "$WORK/data" --batch 2 --seq 32 --val-every 0 --watchdog-s 60)

# wait_stopped_rank: the pid of a rank of this test that is stopped (state T), at most 30 s.
wait_stopped_rank() {
  for _ in $(seq 1 300); do
    for p in $(pgrep -f "^$MC train --data $WORK/data"); do
      [ "$(awk '{print $3}' /proc/$p/stat 2>/dev/null)" = T ] && { echo "$p"; return 0; }
    done
    sleep 0.1
  done
  return 1
}

# ---- SIGTERM to rank 1 while it is in start-up (it stops itself there: test hook MC_TEST_STOP_IN)
timeout 120 "${MPI[@]}" -x MC_TEST_STOP_IN="1:start-up (resume)" "$MC" "${T[@]}" --steps 50 --ckpt-dir "$WORK/su" \
  >su.txt 2>sue.txt &
pid=$!
if victim=$(wait_stopped_rank); then
  kill -TERM "$victim"; kill -CONT "$victim"
  wait $pid; rc=$?
  [ $rc -eq 0 ] && grep -q "^stopping before step 1 (stop requested during start-up)" su.txt && ! grep -q "^step" su.txt \
    && pass "one rank's SIGTERM during start-up: every rank stops before step 1, exit 0" \
    || fail "stop during start-up: rc=$rc (124 = hung) $(tail -2 su.txt; grep -v '^-\|^$' sue.txt | head -3)"
else
  fail "rank 1 did not stop in start-up"; kill_ranks; kill -KILL $pid
fi

# ---- SIGHUP to one rank: a graceful stop of the whole job
"${MPI[@]}" "$MC" "${T[@]}" --steps 100000 --ckpt-dir "$WORK/hup" >h.txt 2>he.txt &
pid=$!
wait_for_line '^step *2/' h.txt 60  # MPI start-up on a loaded machine
victim=$(rank_pid)
kill -HUP "$victim"
if wait_gone $pid 60; then
  wait $pid; rc=$?
  n=$(ls hup/ckpt_*.bin 2>/dev/null | wc -l)
  [ $rc -eq 0 ] && [ "$n" -eq 1 ] && grep -q "^stopping after step" h.txt \
    && pass "SIGHUP to one rank: $(grep stopping h.txt)" || fail "SIGHUP to one rank: rc=$rc, $n checkpoints $(tail -2 he.txt)"
else
  fail "job still running 60 s after SIGHUP"; kill_ranks; kill -KILL $pid
fi

# ---- resuming the finished run on 2 ranks: nothing to train, no hang
step=$(basename "$(ls hup/ckpt_*.bin | tail -1)" .bin | sed 's/ckpt_0*//')
timeout 120 "${MPI[@]}" "$MC" "${T[@]}" --steps "$step" --ckpt-dir "$WORK/hup" --resume >n.txt 2>ne.txt
rc=$?
[ $rc -eq 0 ] && grep -q "^nothing to train: .* already at step $step of --steps $step" n.txt \
  && pass "finished run on 2 ranks: $(grep 'nothing to train' n.txt | cut -c1-90)" || fail "finished run: rc=$rc $(tail -2 ne.txt)"
finish
