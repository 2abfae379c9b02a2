#!/usr/bin/env bash
# scripts/plot.py simulate: the PNGs drawn from `minicolossus simulate --json`, and bad input refused with
# exit 2 and one line, without waiting on a FIFO. Skipped (77) where Debian's python3 has no matplotlib.
source "$(dirname "$0")/lib.bash"
PLOT="$(cd "$(dirname "$0")/../.." && pwd)/scripts/plot.py"
PY=/usr/bin/python3
"$PY" -c 'import matplotlib' 2>/dev/null || { echo "skipped: no matplotlib for $PY (bash scripts/setup.sh)"; exit 77; }

"$MC" simulate --gpus 1,8,512,100000 --json >sim.json || { fail "simulate --json"; finish; }
if "$PY" "$PLOT" simulate sim.json --out figs >paths.txt 2>err.txt; then
  n=0
  while read -r f; do
    [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] && [ "$(stat -c %s "$f")" -gt 10000 ] &&
      n=$((n + 1))
  done <paths.txt
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
finish
