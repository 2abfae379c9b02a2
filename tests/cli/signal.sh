# SIGTERM: the current step finishes, a checkpoint is written, exit code 0; --resume continues.
source "$(dirname "$0")/lib.bash"
make_data
"$MC" train --data data --steps 100000 --batch 2 --seq 32 --ckpt-dir ck --val-every 0 > run.txt 2>&1 &
pid=$!
wait_for_line '^step' run.txt
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 0 ] && pass "exit 0 after SIGTERM" || fail "exit code $rc after SIGTERM: $(tail -3 run.txt)"
ck=$(ls ck/ckpt_*.bin 2>/dev/null | tail -1)
[ -n "$ck" ] && pass "checkpoint $ck written" || fail "no checkpoint after SIGTERM"
step=$(basename "$ck" .bin | sed 's/ckpt_0*//')
"$MC" train --data data --steps $((step + 2)) --batch 2 --seq 32 --ckpt-dir ck --resume --val-every 0 > resume.txt 2>&1 \
  && grep -q "resumed from" resume.txt && grep -q "^step *$((step + 2))/" resume.txt \
  && pass "resumed from step $step to $((step + 2))" || fail "resume: $(tail -3 resume.txt)"
finish
