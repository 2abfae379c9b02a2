# Ranks agree on failure (Note [Agreed failure]): an input error on ONE rank ends every rank with
# exit 2 and one message, instead of leaving the others waiting forever; ranks whose data differs in
# content (same path) are refused; replicas whose parameters diverge stop the job naming the rank.
source "$(dirname "$0")/lib.bash"
command -v mpirun >/dev/null || exit 77
export OMP_NUM_THREADS=1
make_data
MPI=(mpirun --allow-run-as-root --oversubscribe)
T=(train --steps 3 --seq 32 --val-every 0 --ckpt-dir "" --watchdog-s 60)

# expect_agreed WHAT PATTERN mpirun-args...: exit 2 within 60 s, exactly one "minicolossus:" line on
# stderr (Open MPI adds its own notice box), matching PATTERN.
expect_agreed() {
  local what="$1" pattern="$2"; shift 2
  timeout 90 "${MPI[@]}" "$@" >out.txt 2>err.txt
  local rc=$? n
  n=$(grep -c '^minicolossus' err.txt)
  if [ $rc -eq 2 ] && [ "$n" -eq 1 ] && grep -q -- "$pattern" err.txt; then
    pass "$what -> exit 2: $(grep '^minicolossus' err.txt)"
  else
    fail "$what: rc=$rc (124 = hung), $n message lines (want 1 matching '$pattern'): $(grep -v '^-\|^$' err.txt | head -3)"
  fi
}
expect_agreed "rank 1 has no --data" "\[rank 1\] --data $WORK/nodata: no such directory" \
  -np 1 "$MC" "${T[@]}" --data "$WORK/data" : -np 1 "$MC" "${T[@]}" --data "$WORK/nodata"
expect_agreed "rank 1 has --batch 0" "\[rank 1\] --batch 0" \
  -np 1 "$MC" "${T[@]}" --data "$WORK/data" --batch 2 : -np 1 "$MC" "${T[@]}" --data "$WORK/data" --batch 0
expect_agreed "rank 1 has an unknown flag" "\[rank 1\] .*--frobnicate" \
  -np 1 "$MC" "${T[@]}" --data "$WORK/data" : -np 1 "$MC" "${T[@]}" --data "$WORK/data" --frobnicate 1
expect_agreed "rank 1 has other (valid) flags" "ranks were started with different flags" \
  -np 1 "$MC" "${T[@]}" --data "$WORK/data" : -np 1 "$MC" "${T[@]}" --data "$WORK/data" --lr 0.5
expect_agreed "rank 2 of 3 lacks its --init-from file" "\[rank 2\] .*missing.bin" \
  -np 2 "$MC" "${T[@]}" --data "$WORK/data" : -np 1 "$MC" "${T[@]}" --data "$WORK/data" --init-from "$WORK/missing.bin"
expect_agreed "every rank has no --data" "^minicolossus: --data $WORK/nodata" \
  -np 2 "$MC" "${T[@]}" --data "$WORK/nodata"

# Same path, different content: each rank runs in its own directory holding its own "data".
mkdir -p a b && cp -r data a/ && cp -r data b/
python3 - b/data/train_000000.bin <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[2000] = (b[2000] + 1) % 200 + 32  # one token changes; the size does not
open(p, 'wb').write(b)
PY
expect_agreed "ranks' data differs in content at the same path" "ranks disagree on the build, flags or data" \
  -np 1 -wdir "$WORK/a" "$MC" "${T[@]}" --data data : -np 1 -wdir "$WORK/b" "$MC" "${T[@]}" --data data

# Replica check: rank 1's parameters are corrupted after step 3 (test hook); 3 ranks, so a majority.
timeout 120 "${MPI[@]}" -np 3 -x MC_TEST_CORRUPT_PARAMS=1:3 "$MC" train --data "$WORK/data" --steps 8 --batch 2 \
  --seq 32 --val-every 0 --ckpt-dir "" --check-every 1 >out.txt 2>err.txt
rc=$?
[ $rc -eq 1 ] && grep -q "replicas differ after step 3: rank 1 differs from ranks 0, 2" err.txt \
  && pass "corrupted replica found: $(grep -m1 replicas err.txt)" || fail "replica check: rc=$rc $(grep -v '^-' err.txt | head -3)"
grep -q "^step *4/" out.txt && fail "training went on after the mismatch" || pass "stopped at the step it was found"
timeout 120 "${MPI[@]}" -np 2 "$MC" train --data "$WORK/data" --steps 6 --batch 2 --seq 32 --val-every 0 \
  --ckpt-dir "" --check-every 1 --zero 1 >out.txt 2>err.txt && pass "healthy replicas pass the check (ZeRO-1)" \
  || fail "healthy run failed the replica check: $(tail -2 err.txt)"
finish
