# minicolossus launch under faults: every restart failing the same way ends after --max-restarts with
# exit 1, a "giving up" line, and the last good checkpoint intact; SIGHUP to launch (its terminal went
# away) is a graceful stop like SIGTERM, not a kill of the job.
source "$(dirname "$0")/lib.bash"
command -v mpirun >/dev/null || exit 77
export OMP_NUM_THREADS=1
make_data
MPIARGS="--allow-run-as-root --oversubscribe"
TRAIN=(--data "$WORK/data" --batch 2 --seq 32 --val-every 0 --watchdog-s 60)

# ---- every attempt fails at its final checkpoint (a directory squats on ckpt_00000006.bin's name)
mkdir -p fail && mkdir fail/ckpt_00000006.bin
timeout 300 "$MC" launch --np 2 --max-restarts 2 --mpirun-args "$MPIARGS" -- "${TRAIN[@]}" --steps 6 --ckpt-every 2 \
  --ckpt-dir "$WORK/fail" >f.txt 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "^launch: giving up: attempt 3 failed (exit 1 .*all 2 restarts (--max-restarts) are used" f.txt \
  && [ "$(grep -c '^launch: attempt [0-9]/3' f.txt)" -eq 3 ] \
  && pass "every restart fails: $(grep 'giving up' f.txt | cut -c1-110)" || fail "every restart fails: rc=$rc (124 = hung): $(grep launch f.txt)"
grep -q "checkpoint after step 6 failed: .*the newest checkpoint in --ckpt-dir is $WORK/fail/ckpt_00000004.bin" f.txt \
  && "$MC" info fail/ckpt_00000004.bin >/dev/null 2>&1 \
  && pass "each failure names the step; ckpt_00000004.bin intact" || fail "failure message: $(grep -m2 minicolossus: f.txt)"
[ -z "$(pgrep -f "^$MC train --data $WORK/data")" ] && pass "no rank left running" || fail "ranks left running"

# ---- SIGHUP to launch: graceful stop (SIGUSR1 to mpirun), exit 0, no restart
"$MC" launch --np 2 --mpirun-args "$MPIARGS" -- "${TRAIN[@]}" --steps 100000 --ckpt-dir "$WORK/hup" >h.txt 2>&1 &
lpid=$!
if wait_for_line '^step *3/' h.txt 60; then
  kill -HUP $lpid
  if wait_gone $lpid 60; then
    wait $lpid; rc=$?
    [ $rc -eq 0 ] && grep -q "^launch: stop requested" h.txt && grep -q "^stopping after step" h.txt \
      && ! grep -q "attempt 2/" h.txt && ls hup/ckpt_*.bin >/dev/null 2>&1 \
      && pass "SIGHUP to launch: $(grep '^stopping after' h.txt)" || fail "SIGHUP to launch: rc=$rc: $(tail -4 h.txt)"
  else
    fail "launch still running 60 s after SIGHUP"; kill -KILL $lpid; kill_ranks
  fi
else
  fail "step 3 not reached: $(tail -4 h.txt)"; kill -TERM $lpid; wait $lpid
fi
finish
