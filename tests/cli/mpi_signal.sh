# Under mpirun: a stop signal reaches every rank, they agree on the step, one checkpoint is written,
# and all exit 0 (SIGUSR1 to mpirun: Open MPI forwards it and waits, while it kills ranks ~1 s after
# forwarding SIGTERM). Then a run on a different number of ranks resumes from that checkpoint.
source "$(dirname "$0")/lib.bash"
command -v mpirun >/dev/null || exit 77
export OMP_NUM_THREADS=1
make_data
MPI=(mpirun --allow-run-as-root --oversubscribe -np 2)
"${MPI[@]}" "$MC" train --data data --steps 100000 --batch 2 --seq 32 --ckpt-dir ck --val-every 0 > run.txt 2>&1 &
pid=$!
wait_for_line '^step' run.txt
kill -USR1 $pid
wait $pid
rc=$?
[ $rc -eq 0 ] && pass "mpirun exit 0 after the stop signal" || fail "mpirun exit $rc: $(tail -5 run.txt)"
n=$(ls ck/ckpt_*.bin 2>/dev/null | wc -l)
[ "$n" -eq 1 ] && pass "exactly one checkpoint" || fail "$n checkpoints"
grep -q "^stopping after step" run.txt && pass "ranks stopped at an agreed step" || fail "no stop line"
ck=$(ls ck/ckpt_*.bin | tail -1); step=$(basename "$ck" .bin | sed 's/ckpt_0*//')
# 2 ranks x batch 2 = 1 rank x batch 2 x accum 2: same global batch, so it resumes.
"$MC" train --data data --steps $((step + 1)) --batch 2 --grad-accum 2 --seq 32 --ckpt-dir ck --resume \
  --val-every 0 > resume.txt 2>&1 && grep -q "written by 2 ranks" resume.txt \
  && pass "resumed on 1 rank from the 2-rank checkpoint" || fail "resume: $(tail -3 resume.txt)"
finish
