# A run is never lost to its surroundings: the checkpoint directory is claimed at start (created,
# probed, locked against a second run, cleaned of a killed run's temporary files), memory is checked
# before it is allocated, a closed stdout does not kill training, a corrupt validation shard is an
# error, and a shard truncated mid-run ends the run with a checkpoint, naming the file.
source "$(dirname "$0")/lib.bash"
export OMP_NUM_THREADS=1
make_data
T=(train --data data --steps 2 --val-every 0)

# --ckpt-dir problems are found before training, with exit 2 naming --ckpt-dir.
touch afile
PATTERN="--ckpt-dir afile: exists and is not a directory" expect_usage "ckpt-dir is a file" "${T[@]}" --ckpt-dir afile
PATTERN="--ckpt-dir afile/sub: afile is not a directory" expect_usage "ckpt-dir under a file" "${T[@]}" --ckpt-dir afile/sub
PATTERN="--ckpt-dir /proc/self/ck: cannot create" expect_usage "ckpt-dir cannot be created" "${T[@]}" --ckpt-dir /proc/self/ck
"$MC" "${T[@]}" --ckpt-dir new/a/b >out.txt 2>&1 && [ -f new/a/b/ckpt_00000002.bin ] \
  && pass "missing parents of --ckpt-dir are created" || fail "nested --ckpt-dir: $(tail -2 out.txt)"

# A second run on a directory in use is refused, naming the holder; leftovers of a killed writer go.
"$MC" train --data data --steps 100000 --val-every 0 --ckpt-dir shared >first.txt 2>&1 &
first=$!
wait_for_line '^step *2/' first.txt || fail "first run did not start: $(tail -2 first.txt)"
PATTERN="--ckpt-dir shared: in use by another run (pid $first" expect_usage "second run on a locked --ckpt-dir" \
  "${T[@]}" --ckpt-dir shared
kill -KILL $first; wait $first 2>/dev/null
touch shared/ckpt_00000007.bin.tmp.12345
"$MC" "${T[@]}" --ckpt-dir shared >out.txt 2>&1 && pass "the lock of a killed run is gone" || fail "after kill: $(tail -2 out.txt)"
[ ! -e shared/ckpt_00000007.bin.tmp.12345 ] && grep -q "removed shared/ckpt_00000007.bin.tmp.12345" out.txt \
  && pass "a killed writer's temporary checkpoint is removed at start" || fail "tmp file left: $(ls shared)"

# Memory is estimated before it is allocated.
PATTERN="--batch 200000: this run needs about" expect_usage "a batch that cannot fit" "${T[@]}" --ckpt-dir "" --batch 200000

# Flags that used to be accepted or wrapped.
PATTERN="--bucket-mb inf" expect_usage "infinite bucket" "${T[@]}" --bucket-mb inf
PATTERN="--seed -1" expect_usage "negative seed" "${T[@]}" --seed -1
PATTERN="--watchdog-s nan" expect_usage "NaN watchdog" "${T[@]}" --watchdog-s nan
PATTERN="--check-every -1" expect_usage "negative replica-check interval" "${T[@]}" --check-every -1

# --metrics must be a file we can write: devices, FIFOs (which would block in open) and missing
# directories are refused at start.
mkfifo fifo
PATTERN="--metrics /dev/full" expect_usage "metrics to /dev/full" "${T[@]}" --ckpt-dir "" --metrics /dev/full
PATTERN="--metrics fifo" USAGE_TIMEOUT=20 expect_usage "metrics to a FIFO" "${T[@]}" --ckpt-dir "" --metrics fifo
PATTERN="--metrics nodir/m.jsonl" expect_usage "metrics in a missing directory" "${T[@]}" --ckpt-dir "" --metrics nodir/m.jsonl

# The trainer keeps its name after the re-exec that sets OMP_WAIT_POLICY (ps, top, pkill).
"$MC" train --data data --steps 100000 --val-every 0 --ckpt-dir "" >name.txt 2>&1 &
pid=$!
wait_for_line '^step' name.txt
name=$(cat /proc/$pid/comm 2>/dev/null)
kill -KILL $pid; wait $pid 2>/dev/null
[ "$name" = minicolossus ] && pass "process name is $name" || fail "process name is '$name'"

# A full disk (a 15 MiB tmpfs holds one tiny checkpoint of 10 MB): a periodic checkpoint that fails
# is a warning and training goes on; the final one must succeed, so the run then exits 1 naming it.
mkdir -p small
if mount -t tmpfs -o size=15m tmpfs small 2>/dev/null; then
  "$MC" train --data data --steps 6 --ckpt-every 2 --val-every 0 --ckpt-dir small/ck >out.txt 2>err.txt
  rc=$?
  grep -q "warning: checkpoint after step 4 failed: .*No space left" err.txt && grep -q "^step *6/6" out.txt \
    && pass "periodic checkpoint on a full disk: warned, trained on" || fail "full disk, periodic: $(head -3 err.txt)"
  [ $rc -eq 1 ] && grep -q "^minicolossus: .*ckpt_00000006.*No space left" err.txt && [ -f small/ck/ckpt_00000002.bin ] \
    && pass "final checkpoint on a full disk -> exit 1, earlier checkpoint kept" || fail "full disk, final: rc=$rc $(tail -2 err.txt)"
  umount small
else
  echo "skip - full-disk case (cannot mount a tmpfs here)"
fi

# Losing stdout must not lose the run.
"$MC" train --data data --steps 20 --val-every 0 --ckpt-dir piped | head -2 >/dev/null
rc=${PIPESTATUS[0]}
[ $rc -eq 0 ] && [ -f piped/ckpt_00000020.bin ] && pass "train | head -2: run finished and saved (exit $rc)" \
  || fail "train | head -2: exit $rc, $(ls piped 2>&1)"

# A corrupt validation shard is an error like a corrupt train shard; a too-short one only warns.
mkdir -p badval && cp data/train_*.bin data/tokenizer.json badval/
printf 'not a shard at all' > badval/val_000000.bin
PATTERN=val_000000.bin expect_usage "corrupt validation shard" train --data badval --steps 1 --ckpt-dir ""

# A shard truncated while training: exit 1 naming it, and the last completed step checkpointed.
mkdir -p trunc && cp data/* trunc/
"$MC" train --data trunc --steps 100000 --val-every 0 --ckpt-dir tck >run.txt 2>err.txt &
pid=$!
wait_for_line '^step *5/' run.txt || fail "truncation run did not start: $(tail -2 err.txt)"
shard=$(ls trunc/train_*.bin | head -1)
truncate -s 1024 "$shard"
if wait_gone $pid 30; then
  wait $pid; rc=$?
  [ $rc -eq 1 ] && pass "truncated shard -> exit 1" || fail "truncated shard: exit $rc"
  grep -q "$(basename "$shard")" err.txt && pass "named: $(grep -m1 "$(basename "$shard")" err.txt)" \
    || fail "shard not named: $(cat err.txt)"
  ls tck/ckpt_*.bin >/dev/null 2>&1 && grep -q "before stopping on a data error" run.txt \
    && pass "checkpoint saved: $(grep -m1 'before stopping' run.txt)" || fail "no checkpoint after the data error"
else
  fail "still running 30 s after its shard was truncated"; kill -KILL $pid
fi
finish
