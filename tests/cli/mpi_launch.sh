# minicolossus launch: a supervisor that reruns a job with --resume when a rank dies.
# (1) no failure: exit 0, final checkpoint at --steps, one attempt;
# (2) kill -9 of a rank: one restart with --resume, exit 0, and the final model equals the
#     uninterrupted run of (1) (same validation loss);
# (3) --max-restarts 0 and a kill: non-zero exit and a "giving up" line;
# (4) bad input (launch's own flags, or a train flag the trainer rejects): exit 2, no restart;
# (5) a lost host (MC_LAUNCH_FAIL_PROBE, Note [Host probe] in src/train/launch.cpp): the restart uses
#     fewer ranks with more accumulation, the same global batch, and finishes;
# (6) mpirun itself killed: its orphaned ranks are killed (Note [No leftovers]), the job restarts
#     and finishes. After every launch, no rank of it is left running;
# (7) SIGTERM to launch: a graceful stop (checkpoint, exit 0), no restart.
source "$(dirname "$0")/lib.bash"
command -v mpirun >/dev/null || exit 77
export OMP_NUM_THREADS=1
make_data
EXE=$(readlink -f "$MC")
MPIARGS="--allow-run-as-root --oversubscribe"
TRAIN=(--data "$WORK/data" --steps 60 --batch 2 --seq 32 --val-every 0 --ckpt-every 5 --log-every 10)
# A rank of the run whose checkpoints go to $1 (not mpirun, not launch).
rank_of() { pgrep -f "^$EXE train --data $WORK/data .*--ckpt-dir $1" | tail -1; }
# wait_step FILE N: up to 60 s for step N in a metrics file.
wait_step() { wait_for_line "\"step\":$2," "$1" 60; }
val_loss() { "$MC" eval --ckpt "$1" --data data --max-seqs 16 2>&1 | awk '/^val_loss/ {print $2}'; }
newest() { ls "$1"/ckpt_*.bin 2>/dev/null | sort | tail -1; }

# (1)
"$MC" launch --np 2 --mpirun-args "$MPIARGS" -- "${TRAIN[@]}" --ckpt-dir ck1 > l1.txt 2>&1
rc=$?
ck=$(newest ck1)
[ $rc -eq 0 ] && [ "$(basename "$ck")" = ckpt_00000060.bin ] && grep -q "summary: 1 attempt, 0 restarts" l1.txt \
  && pass "no failure: exit 0, $ck, $(grep summary l1.txt)" || fail "no failure: rc=$rc ck=$ck: $(tail -5 l1.txt)"
ref=$(val_loss "$ck")

# (2)
"$MC" launch --np 2 --max-restarts 2 --mpirun-args "$MPIARGS" -- "${TRAIN[@]}" --ckpt-dir ck2 --metrics m2.jsonl \
  > l2.txt 2>&1 &
lpid=$!
if wait_step m2.jsonl 8 && victim=$(rank_of ck2) && [ -n "$victim" ]; then
  kill -KILL "$victim"
  wait $lpid; rc=$?
  ck=$(newest ck2)
  [ $rc -eq 0 ] && [ "$(basename "$ck")" = ckpt_00000060.bin ] && pass "killed rank $victim: exit 0, $ck" \
    || fail "after a kill: rc=$rc ck=$ck: $(tail -5 l2.txt)"
  grep -q "^launch: attempt 2/3: 2 ranks x batch 2 x accum 1 = 4 sequences (attempt 1 failed: exit [0-9]*" l2.txt \
    && grep -q "^resumed from" l2.txt && grep -q "summary: 2 attempts, 1 restart," l2.txt \
    && pass "restarted once with --resume: $(grep 'attempt 2/' l2.txt)" || fail "restart lines: $(grep launch: l2.txt)"
  grep -q "effective training time" l2.txt && pass "$(grep summary l2.txt)" || fail "no summary line"
  got=$(val_loss "$ck")
  python3 -c "import sys; a, b = float('$ref'), float('$got'); sys.exit(abs(a - b) > 1e-5 * max(1, abs(a)))" \
    && pass "final model equals the uninterrupted run (val loss $got vs $ref)" \
    || fail "final model differs: val loss $got, uninterrupted $ref"
  [ -z "$(rank_of ck2)" ] && pass "no rank left running" || fail "ranks left running: $(rank_of ck2)"
else
  fail "no rank to kill (step 8 not reached): $(tail -5 l2.txt)"; kill -TERM $lpid; wait $lpid
fi

# (3)
"$MC" launch --np 2 --max-restarts 0 --mpirun-args "$MPIARGS" -- "${TRAIN[@]}" --ckpt-dir ck3 --metrics m3.jsonl \
  > l3.txt 2>&1 &
lpid=$!
if wait_step m3.jsonl 3 && victim=$(rank_of ck3) && [ -n "$victim" ]; then
  kill -KILL "$victim"
  wait $lpid; rc=$?
  [ $rc -ne 0 ] && grep -q "^launch: giving up: attempt 1 failed" l3.txt && ! grep -q "attempt 2/" l3.txt \
    && pass "--max-restarts 0: exit $rc, $(grep 'giving up' l3.txt)" || fail "--max-restarts 0: rc=$rc: $(tail -5 l3.txt)"
  [ -z "$(rank_of ck3)" ] && pass "no rank left running" || fail "ranks left running: $(rank_of ck3)"
else
  fail "no rank to kill: $(tail -5 l3.txt)"; kill -TERM $lpid; wait $lpid
fi

# (4)
PATTERN="--ckpt-dir"; expect_usage "no --ckpt-dir" launch --np 2 -- --data data --steps 2
PATTERN="--np"; expect_usage "--np 0" launch --np 0 -- --ckpt-dir x
PATTERN="--max-restarts"; expect_usage "--max-restarts -1" launch --np 1 --max-restarts -1 -- --ckpt-dir x
PATTERN="--ckpt-dir ck1: already holds checkpoints"; expect_usage "used --ckpt-dir without --resume" \
  launch --np 1 -- --data data --ckpt-dir ck1
PATTERN="--np 3: more ranks than the 2 slots"; expect_usage "--np above the slots" launch --np 3 --hosts a:1,b:1 -- --ckpt-dir x
"$MC" launch --np 2 --mpirun-args "$MPIARGS" -- "${TRAIN[@]}" --ckpt-dir ck4 --lr -1 > l4.txt 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "^launch: the job rejected its input" l4.txt && ! grep -q "attempt 2/" l4.txt \
  && pass "a train flag the trainer rejects: exit 2, no restart" || fail "bad train flag: rc=$rc: $(tail -5 l4.txt)"

# (5) three ranks on "localhost:2" and "127.0.0.1:1"; 127.0.0.1 is then lost: 2 ranks x batch 2 x accum 3.
MC_LAUNCH_FAIL_PROBE=127.0.0.1 "$MC" launch --np 3 --hosts localhost:2,127.0.0.1:1 --mpirun-args "$MPIARGS" -- \
  "${TRAIN[@]}" --grad-accum 2 --ckpt-dir ck5 --metrics m5.jsonl > l5.txt 2>&1 &
lpid=$!
if wait_step m5.jsonl 6 && victim=$(rank_of ck5) && [ -n "$victim" ]; then
  kill -KILL "$victim"
  wait $lpid; rc=$?
  ck=$(newest ck5)
  grep -q "host probe: localhost:2 ok, 127.0.0.1:1 LOST" l5.txt \
    && grep -q "^launch: attempt 2/4: 2 ranks x batch 2 x accum 3 = 12 sequences on localhost:2 " l5.txt \
    && grep -q "written by 3 ranks" l5.txt && [ $rc -eq 0 ] && [ "$(basename "$ck")" = ckpt_00000060.bin ] \
    && tail -1 m5.jsonl | grep -q '"ranks":2' \
    && pass "lost host: $(grep 'attempt 2/' l5.txt)" || fail "lost host: rc=$rc ck=$ck: $(grep -E 'launch|resumed' l5.txt)"
else
  fail "no rank to kill: $(tail -5 l5.txt)"; kill -TERM $lpid; wait $lpid
fi

# (6)
"$MC" launch --np 2 --mpirun-args "$MPIARGS" -- "${TRAIN[@]}" --ckpt-dir ck6 --metrics m6.jsonl > l6.txt 2>&1 &
lpid=$!
mpi=""
wait_step m6.jsonl 6 && mpi=$(pgrep -P $lpid | head -1)  # launch's one child: mpirun (a wrapper script in the bundle execs the real one)
if [ -n "$mpi" ]; then
  kill -KILL "$mpi"
  wait $lpid; rc=$?
  [ $rc -eq 0 ] && grep -q "^launch: attempt 2/4: .*(attempt 1 failed: exit 137" l6.txt \
    && [ "$(basename "$(newest ck6)")" = ckpt_00000060.bin ] && [ -z "$(rank_of ck6)" ] \
    && pass "mpirun killed: restarted, finished, nothing left running ($(grep -c 'left over' l6.txt) leftover line)" \
    || fail "mpirun killed: rc=$rc: $(grep -E 'launch' l6.txt) $(rank_of ck6)"
else
  fail "no mpirun to kill: $(tail -5 l6.txt)"; kill -TERM $lpid; wait $lpid
fi

# (7)
"$MC" launch --np 2 --mpirun-args "$MPIARGS" -- "${TRAIN[@]}" --ckpt-dir ck7 --metrics m7.jsonl > l7.txt 2>&1 &
lpid=$!
if wait_step m7.jsonl 4; then
  kill -TERM $lpid
  wait $lpid; rc=$?
  [ $rc -eq 0 ] && grep -q "^stopping after step" l7.txt && grep -q "^launch: the job stopped on request (exit 0" l7.txt \
    && ! grep -q "attempt 2/" l7.txt && [ -n "$(newest ck7)" ] && [ -z "$(rank_of ck7)" ] \
    && pass "SIGTERM: graceful stop at $(newest ck7), exit 0, no restart" || fail "SIGTERM: rc=$rc: $(tail -5 l7.txt)"
else
  fail "step 4 not reached: $(tail -5 l7.txt)"; kill -TERM $lpid; wait $lpid
fi
finish
