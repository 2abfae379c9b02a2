# Checkpoint faults that must not lose a run: --ckpt-keep never deletes the checkpoint just written in
# favour of a newer, unusable one; a final checkpoint that fails says which step is lost and what is left;
# a periodic one that fails only warns; a resumed run that has nothing left to do says so; a fresh run
# among another run's checkpoints is warned about.
source "$(dirname "$0")/lib.bash"
export OMP_NUM_THREADS=1
make_data
T=(train --data data --batch 2 --seq 32 --val-every 0 --check-every 0)

# ---- --ckpt-keep with a corrupt newest checkpoint (skipped by --resume)
"$MC" "${T[@]}" --steps 6 --ckpt-dir keep --ckpt-every 2 --ckpt-keep 2 >/dev/null 2>&1 || fail "first run"
printf 'XXXX' | dd of=keep/ckpt_00000006.bin bs=1 seek=5000000 conv=notrunc 2>/dev/null
"$MC" "${T[@]}" --steps 10 --ckpt-dir keep --ckpt-every 1 --ckpt-keep 1 --resume --stop-at 5 >k1.txt 2>k1e.txt
rc=$?
[ $rc -eq 0 ] && grep -q "resumed from keep/ckpt_00000004.bin" k1.txt && [ -f keep/ckpt_00000005.bin ] \
  && pass "--ckpt-keep 1 keeps the checkpoint just written (step 5) beside the corrupt newer one" \
  || fail "--ckpt-keep 1 with a corrupt newer checkpoint: rc=$rc, files: $(ls keep | tr '\n' ' ') $(tail -2 k1e.txt)"
[ ! -e keep/ckpt_00000004.bin ] && pass "older checkpoints are still pruned" || fail "ckpt_00000004.bin not pruned"
"$MC" "${T[@]}" --steps 7 --ckpt-dir keep --ckpt-keep 1 --resume >k2.txt 2>k2e.txt \
  && grep -q "resumed from keep/ckpt_00000005.bin" k2.txt && grep -qE "^step +7/7" k2.txt \
  && pass "the next --resume continues from it" || fail "resume after pruning: $(tail -2 k2e.txt)"

# ---- a final checkpoint that cannot be written (a directory squats on its name): exit 1, one line
# naming the step and the newest checkpoint left; a periodic one that fails is a warning.
mkdir -p fin && mkdir fin/ckpt_00000006.bin fin/ckpt_00000002.bin
"$MC" "${T[@]}" --steps 6 --ckpt-dir fin --ckpt-every 2 >f.txt 2>fe.txt
rc=$?
grep -q "warning: checkpoint after step 2 failed" fe.txt && [ -f fin/ckpt_00000004.bin ] \
  && pass "periodic checkpoint failure is a warning: $(grep -m1 'after step 2' fe.txt | cut -c1-120)" \
  || fail "periodic failure: $(cat fe.txt)"
[ $rc -eq 1 ] && [ "$(grep -c '^minicolossus:' fe.txt)" -eq 1 ] \
  && grep -q "^minicolossus: checkpoint after step 6 failed: .*; the newest checkpoint in --ckpt-dir is fin/ckpt_00000004.bin$" fe.txt \
  && pass "final checkpoint failure -> exit 1: $(grep '^minicolossus' fe.txt | cut -c1-160)" \
  || fail "final checkpoint failure: rc=$rc $(cat fe.txt)"
ls fin | grep -q tmp && fail "temporary file left behind: $(ls fin)" || pass "no temporary file left behind"

# ---- --resume on a finished run: nothing to train, said so, exit 0, the checkpoint untouched
sum=$(md5sum keep/ckpt_00000007.bin)
"$MC" "${T[@]}" --steps 7 --ckpt-dir keep --resume >n.txt 2>ne.txt \
  && grep -q "nothing to train: keep/ckpt_00000007.bin is already at step 7 of --steps 7" n.txt \
  && [ "$(md5sum keep/ckpt_00000007.bin)" = "$sum" ] \
  && pass "finished run: $(grep 'nothing to train' n.txt)" || fail "finished run: $(tail -2 n.txt; cat ne.txt)"
# --stop-at already reached by the checkpoint: no extra step, no new checkpoint.
"$MC" "${T[@]}" --steps 20 --ckpt-dir keep --resume --stop-at 7 >s.txt 2>se.txt \
  && grep -q "stopping before step 8 (--stop-at already reached)" s.txt && ! grep -q "^step" s.txt \
  && [ ! -e keep/ckpt_00000008.bin ] \
  && pass "--stop-at already reached: $(grep 'stopping before' s.txt)" || fail "--stop-at reached: $(tail -2 s.txt; cat se.txt)"

# ---- a fresh run (no --resume) in a directory of another run's checkpoints: trains, and warns
"$MC" "${T[@]}" --steps 2 --ckpt-dir keep >w.txt 2>we.txt \
  && grep -q "warning: --ckpt-dir keep already holds .* checkpoint.*newest keep/ckpt_00000007.bin.*whichever run" we.txt \
  && pass "fresh run among old checkpoints warns" || fail "fresh run warning: $(cat we.txt)"
"$MC" "${T[@]}" --steps 2 --ckpt-dir fresh >w2.txt 2>we2.txt && [ ! -s we2.txt ] \
  && pass "no warning in a new directory" || fail "new directory: $(cat we2.txt)"

# ---- --resume with a different --seed (the data order) is warned about
"$MC" "${T[@]}" --steps 4 --ckpt-dir fresh --resume --seed 7 >sd.txt 2>sde.txt \
  && grep -q "warning: --resume: --seed is 7; the checkpoint was trained with 1337" sde.txt \
  && pass "changed --seed on resume: $(cut -c1-100 sde.txt)" || fail "seed warning: $(cat sde.txt)"

# ---- a file size limit (ulimit -f: 5 MB, half a checkpoint) used to kill the run by SIGXFSZ in the middle
# of a checkpoint, silently; now the write fails: the periodic checkpoint warns, the final one is exit 1.
(ulimit -f 5000; exec "$MC" "${T[@]}" --steps 4 --ckpt-every 2 --ckpt-dir fsz >z.txt 2>ze.txt)
rc=$?
[ $rc -eq 1 ] && grep -q "warning: checkpoint after step 2 failed: .*File too large" ze.txt \
  && grep -q "^minicolossus: checkpoint after step 4 failed: .*File too large; --ckpt-dir fsz holds no checkpoint" ze.txt \
  && ! ls fsz | grep -q tmp \
  && pass "file size limit: exit 1, $(grep '^minicolossus' ze.txt | cut -c1-90)" || fail "file size limit: rc=$rc $(cat ze.txt)"

# ---- --metrics naming a file the run reads or keeps is refused before it is truncated or appended to
sum=$(md5sum fresh/ckpt_00000004.bin)
PATTERN="^minicolossus: --metrics fresh/ckpt_00000004.bin: is fresh/ckpt_00000004.bin, which this run reads or keeps" \
  expect_usage "--metrics names the checkpoint resumed from" "${T[@]}" --steps 5 --ckpt-dir fresh --resume --seed 7 \
  --metrics fresh/ckpt_00000004.bin
[ "$(md5sum fresh/ckpt_00000004.bin)" = "$sum" ] && "$MC" info fresh/ckpt_00000004.bin >/dev/null 2>&1 \
  && pass "the checkpoint is intact" || fail "the checkpoint was changed"
shard=$(ls data/train_*.bin | head -1)
PATTERN="^minicolossus: --metrics ./$shard: is $shard" expect_usage "--metrics names a training shard" \
  "${T[@]}" --steps 1 --ckpt-dir "" --metrics "./$shard"
PATTERN="--metrics fresh/.minicolossus.lock: is" expect_usage "--metrics names the lock" \
  "${T[@]}" --steps 1 --ckpt-dir fresh --metrics fresh/.minicolossus.lock
finish
