# The metrics file `simulate --calibrate` reads: every step line carries the phase timings (Note [Step
# phases] in src/train/trainer.cpp) that add up to the step time, and the run's shape under the exact
# key names the calibration expects. 1 rank always; 2 ranks (plain and --zero 1) when mpirun exists.
source "$(dirname "$0")/lib.bash"
make_data
T=(train --data data --steps 4 --batch 2 --seq 32 --val-every 0 --ckpt-dir "" --check-every 0)

# check_metrics FILE RANKS ZERO OMP_THREADS: every line has every key with the right type and consistent values.
check_metrics() {
  python3 - "$@" <<'PY'
import json, sys
path, ranks, zero, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(l) for l in open(path)]
assert len(rows) == 4, f"{len(rows)} lines, want 4"
num = (int, float)
keys = {"step": int, "loss": num, "ms": num, "comm_exposed_ms": num, "data_ms": num, "fwd_bwd_ms": num,
        "opt_ms": num, "batch": int, "seq": int, "grad_accum": int, "zero": int, "bucket_mb": num,
        "overlap": bool, "device": str, "comm": str, "params": int, "flops_per_token": num, "layers": int,
        "heads": int, "channels": int, "vocab": int, "padded_vocab": int, "max_seq_len": int,
        "peak_tflops": num, "omp_threads": int, "ranks": int}
for r in rows:
    for k, t in keys.items():
        assert k in r, f"step {r.get('step')}: no key {k}"
        v = r[k]
        # bool is an int in Python: keep the two apart both ways
        ok = isinstance(v, bool) if t is bool else isinstance(v, t) and not isinstance(v, bool)
        assert ok, f"step {r['step']}: {k} = {v!r} is not {t}"
    phases = r["data_ms"] + r["fwd_bwd_ms"] + r["comm_exposed_ms"] + r["opt_ms"]
    assert abs(phases - r["ms"]) <= 0.01 * r["ms"] + 0.5, f"step {r['step']}: phases sum {phases} vs ms {r['ms']}"
    assert min(r["data_ms"], r["fwd_bwd_ms"], r["comm_exposed_ms"], r["opt_ms"]) >= 0, r
    assert r["fwd_bwd_ms"] > 0 and r["params"] > 0 and r["flops_per_token"] > 0 and r["peak_tflops"] > 0, r
    assert (r["batch"], r["seq"], r["grad_accum"], r["zero"], r["ranks"]) == (2, 32, 1, zero, ranks), r
    assert r["overlap"] is True and r["device"] == "cpu" and r["bucket_mb"] == 25, r
    assert r["comm"] == ("single" if ranks == 1 else "mpi"), r["comm"]
    assert r["layers"] > 0 and r["heads"] > 0 and r["channels"] % r["heads"] == 0, r
    assert 0 < r["vocab"] <= r["padded_vocab"] and r["max_seq_len"] >= r["seq"], r
    assert r["omp_threads"] == threads, f"omp_threads {r['omp_threads']}, but OMP_NUM_THREADS={threads}"
print(f"{len(rows)} lines; last: ms {r['ms']:.2f} = data {r['data_ms']:.2f} + fwd_bwd {r['fwd_bwd_ms']:.2f} "
      f"+ comm {r['comm_exposed_ms']:.2f} + opt {r['opt_ms']:.2f}; params {r['params']}")
PY
}

"$MC" "${T[@]}" --metrics m1.jsonl >t1.txt 2>&1 && pass "1-rank train" \
  || { fail "1-rank train: $(tail -3 t1.txt)"; finish; }
out=$(check_metrics m1.jsonl 1 0 "$OMP_NUM_THREADS" 2>&1) && pass "1 rank: $out" || fail "1 rank: $out"
# The stdout step line is unchanged by the new keys.
grep -qE '^step +4/4 \| loss [0-9.]+ \| lr [0-9.e+-]+ \| norm [0-9.]+ \| +[0-9.]+ ms \| +[0-9]+ tok/s \| mfu' t1.txt \
  && pass "stdout step line unchanged" || fail "stdout step line: $(grep '^step' t1.txt | tail -1)"

if command -v mpirun >/dev/null; then
  MPI=(mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1)
  for zero in 0 1; do
    timeout 300 "${MPI[@]}" "$MC" "${T[@]}" --zero "$zero" --metrics "m2z$zero.jsonl" >"t2z$zero.txt" 2>&1 \
      && pass "2-rank train --zero $zero" || { fail "2-rank train --zero $zero: $(tail -3 "t2z$zero.txt")"; continue; }
    out=$(check_metrics "m2z$zero.jsonl" 2 "$zero" 1 2>&1) && pass "2 ranks --zero $zero: $out" \
      || fail "2 ranks --zero $zero: $out"
  done
else
  echo "skip - 2-rank runs: no mpirun"
fi
finish
