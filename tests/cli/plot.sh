#!/usr/bin/env bash
# scripts/plot.py simulate and metrics: the PNGs drawn from `minicolossus simulate --json` and from the
# --metrics files of real training runs, and bad input refused with exit 2 and one line (naming the file
# and line), without waiting on a FIFO. Skipped (77) where Debian's python3 has no matplotlib.
source "$(dirname "$0")/lib.bash"
PLOT="$(cd "$(dirname "$0")/../.." && pwd)/scripts/plot.py"
PY=/usr/bin/python3
"$PY" -c 'import matplotlib' 2>/dev/null || { echo "skipped: no matplotlib for $PY (bash scripts/setup.sh)"; exit 77; }

# valid_png FILE: PNG signature, at least 10 kB, and at least 800 x 500 pixels (IHDR)
valid_png() {
  [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] && [ "$(stat -c %s "$1")" -gt 10000 ] &&
    [ "$(od -An -tu1 -j16 -N8 "$1" | awk '{print ($3 * 256 + $4 >= 800 && $7 * 256 + $8 >= 500)}')" = 1 ]
}

"$MC" simulate --gpus 1,8,512,100000 --json >sim.json || { fail "simulate --json"; finish; }
if "$PY" "$PLOT" simulate sim.json --out figs >paths.txt 2>err.txt; then
  n=0
  while read -r f; do valid_png "$f" && n=$((n + 1)); done <paths.txt
  [ "$n" -eq 3 ] && pass "3 PNG files: $(tr '\n' ' ' <paths.txt)" || fail "$n valid PNGs of: $(cat paths.txt)"
else
  fail "plot.py simulate: $(cat err.txt)"
fi

# exit 2, one stderr line matching $PATTERN, within 20 s (lib.bash)
expect_plot_usage() { local what="$1"; shift; USAGE_TIMEOUT=20 expect_exit2 "$what" "$PY" "$PLOT" "$@"; }
PATTERN='missing.json'; expect_plot_usage "missing file" simulate missing.json --out figs2
echo 'not json' >bad.json
PATTERN='bad.json'; expect_plot_usage "not JSON" simulate bad.json --out figs2
echo '{"rows": []}' >empty.json
PATTERN='empty.json'; expect_plot_usage "no rows" simulate empty.json --out figs2
mkfifo fifo
PATTERN='fifo'; expect_plot_usage "a FIFO" simulate fifo --out figs2
# integers beyond a float's range (Python's json reads them exactly) in the title and the columns
"$PY" -c 'import json; s = json.load(open("sim.json")); s["config"]["batch"] = s["rows"][0]["step_ms"] = 10**400
print(json.dumps(s))' >simbig.json
"$PY" "$PLOT" simulate simbig.json --out figs3 >paths.txt 2>err.txt && valid_png figs3/simbig_scaling.png \
  && pass "simulate: a 401-digit batch and step_ms drawn" || fail "simulate: a 401-digit number: $(tail -2 err.txt)"

# ---- metrics: two tiny training runs (different learning rates), and a copy of one that claims 2 ranks
# with exposed communication (the comm figure's other branch)
make_data
R=(train --data data --batch 2 --seq 32 --steps 8 --val-every 4 --val-seqs 4 --ckpt-dir "")
"$MC" "${R[@]}" --metrics run_a.jsonl >ta.txt 2>&1 && "$MC" "${R[@]}" --lr 3e-3 --metrics run_b.jsonl >tb.txt 2>&1 \
  || { fail "training runs: $(tail -2 ta.txt tb.txt)"; finish; }
"$PY" - <<'PY'
import json
with open("run_a.jsonl") as f, open("run_2r.jsonl", "w") as g:
    for line in f:
        r = json.loads(line)
        r.update(ranks=2, comm_exposed_ms=0.25 * r["ms"])
        g.write(json.dumps(r) + "\n")
PY
if "$PY" "$PLOT" metrics run_a.jsonl run_b.jsonl run_2r.jsonl --label "lr 1e-3" --label "lr 3e-3" --label "2 ranks" \
    --out mfigs >paths.txt 2>err.txt; then
  n=0
  for f in mfigs/loss.png mfigs/throughput.png mfigs/comm.png; do valid_png "$f" && n=$((n + 1)); done
  [ "$n" -eq 3 ] && [ "$(wc -l <paths.txt)" -eq 3 ] && pass "metrics: 3 PNG files: $(tr '\n' ' ' <paths.txt)" \
    || fail "metrics: $n valid PNGs, printed: $(cat paths.txt)"
  ls mfigs | grep -q tmp && fail "metrics: a temporary file left in --out: $(ls mfigs)"
else
  fail "plot.py metrics: $(cat err.txt)"
fi
# A run resumed from step 4's checkpoint appends steps 5 to 8 again, its elapsed_s starting over: the
# wall-time axis continues the first process's clock instead of going back.
out=$("$PY" - "$PLOT" <<'PY' 2>&1
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("plot", sys.argv[1])
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)
rows = [json.loads(l) for l in open("run_a.jsonl")]
e = {r["step"]: r["elapsed_s"] for r in rows}
with open("resumed.jsonl", "w") as f:
    for r in rows + [dict(r, elapsed_s=r["elapsed_s"] - e[4]) for r in rows[4:]]:
        f.write(json.dumps(r) + "\n")
run = plot.read_metrics("resumed.jsonl", "time")
x = run["x"]
assert run["step"] == list(range(1, 9)), run["step"]
assert all(a < b for a, b in zip(x, x[1:])), x
assert abs(x[-1] - (e[8] + e[8] - e[4])) < 1e-9, (x[-1], e)
print("wall seconds", [round(v, 3) for v in x])
PY
) && pass "metrics --x time, a resumed run: $out" || fail "metrics --x time, a resumed run: $out"
# one run, wall time on x; its directory is the default --out
mkdir -p one && cp run_a.jsonl one/
"$PY" "$PLOT" metrics one/run_a.jsonl --x time >paths.txt 2>err.txt && valid_png one/loss.png &&
  valid_png one/comm.png \
  && pass "metrics --x time, default --out" || fail "metrics --x time: $(cat err.txt)"

PATTERN='missing.jsonl'; expect_plot_usage "metrics: missing file" metrics run_a.jsonl missing.jsonl --out m2
: >empty.jsonl
PATTERN='empty.jsonl: no metrics'; expect_plot_usage "metrics: empty file" metrics empty.jsonl --out m2
{ head -2 run_a.jsonl; echo '{"step": 3, "loss": 2.0,'; } >trunc.jsonl
PATTERN='trunc.jsonl:3: not JSON'; expect_plot_usage "metrics: truncated line" metrics trunc.jsonl --out m2
echo '{"step": 1, "lr": 0.001}' >nokeys.jsonl
PATTERN='nokeys.jsonl:1: lacks loss'; expect_plot_usage "metrics: no loss key" metrics nokeys.jsonl --out m2
echo '{"step": 1, "loss": "high", "tokens_per_s": 1, "mfu": 0}' >str.jsonl
PATTERN='str.jsonl:1: loss'; expect_plot_usage "metrics: a string loss" metrics str.jsonl --out m2
python3 -c 'print("[" * 100000 + "]" * 100000)' >deep.jsonl
PATTERN='deep.jsonl:1: not JSON'; expect_plot_usage "metrics: arrays nested 100000 deep" metrics deep.jsonl --out m2
echo "{\"step\": 1$(printf '0%.0s' $(seq 400)), \"loss\": 1, \"tokens_per_s\": 1, \"mfu\": 0}" >bigstep.jsonl
PATTERN='bigstep.jsonl:1: step = 1000*\.\.\.: want an integer'; expect_plot_usage "metrics: a 401-digit step" metrics bigstep.jsonl \
  --out m2
echo '{"step": 1, "loss": 1, "tokens_per_s": 1, "mfu": 0, "batch": 2, "seq": 1e3, "grad_accum": 1}' >shape.jsonl
PATTERN='shape.jsonl:1: lacks seq'; expect_plot_usage "metrics: --x tokens, seq not an integer" metrics shape.jsonl \
  --x tokens --out m2
PATTERN='sim.json: one JSON document'; expect_plot_usage "metrics: a simulate file" metrics sim.json --out m2
PATTERN='mfigs: a directory'; expect_plot_usage "metrics: a directory" metrics mfigs --out m2
PATTERN='fifo'; expect_plot_usage "metrics: a FIFO" metrics run_a.jsonl fifo --out m2
PATTERN='--label'; expect_plot_usage "metrics: --label count" metrics run_a.jsonl run_b.jsonl --label a --out m2
PATTERN='--out run_b.jsonl'; expect_plot_usage "metrics: --out a file" metrics run_a.jsonl --out run_b.jsonl
[ ! -e m2 ] && pass "no output directory after bad input" || fail "m2 created on bad input: $(ls m2)"
# Numbers Python reads but a float cannot hold, and a "ranks" that is not a number: drawn, no traceback.
{ echo "{\"step\": 1, \"loss\": 1$(printf '0%.0s' $(seq 400)), \"tokens_per_s\": 1, \"mfu\": 0, \"ranks\": [2]}"
  echo '{"step": 2, "loss": 2.5, "tokens_per_s": 1e999, "mfu": 0, "ranks": {"n": 2}}'; } >odd.jsonl
"$PY" "$PLOT" metrics odd.jsonl --out m3 >paths.txt 2>err.txt && valid_png m3/loss.png \
  && pass "metrics: huge numbers and a non-numeric ranks drawn" || fail "metrics: odd values: $(tail -3 err.txt)"
finish
