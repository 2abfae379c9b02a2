# End to end through the binary: prepare -> train (metrics) -> eval -> sample -> export -> init-from.
source "$(dirname "$0")/lib.bash"
make_data
"$MC" train --data data --steps 6 --batch 4 --seq 32 --val-every 3 --ckpt-dir ck --metrics m.jsonl >train.txt 2>&1 \
  && pass "train" || { fail "train: $(tail -5 train.txt)"; finish; }
[ "$(wc -l < m.jsonl)" -eq 6 ] && pass "6 metrics lines" || fail "metrics lines: $(wc -l < m.jsonl)"
python3 - <<'PY' && pass "metrics fields" || fail "metrics fields"
import json
rows = [json.loads(l) for l in open("m.jsonl")]
need = {"step", "loss", "lr", "grad_norm", "ms", "tokens_per_s", "mfu"}
assert all(need <= set(r) for r in rows), rows[0]
assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
assert "val_loss" in rows[2] and "val_loss" in rows[5]
PY
grep -q '^config {' train.txt && pass "resolved config printed" || fail "config line"
"$MC" eval --ckpt ck/ckpt_00000006.bin --data data > eval.txt 2>&1 && grep -q '^val_loss [0-9]' eval.txt \
  && pass "eval: $(cat eval.txt)" || fail "eval: $(cat eval.txt)"
"$MC" sample --ckpt ck/ckpt_00000006.bin --prompt "in the" --tokens 20 --top-k 5 > sample.txt 2>&1 \
  && [ "$(head -c 6 sample.txt)" = "in the" ] && pass "sample: $(head -c 60 sample.txt | tr '\n' ' ')" \
  || fail "sample: $(cat sample.txt)"
"$MC" export --ckpt ck/ckpt_00000006.bin --out model.bin >/dev/null 2>&1 && [ -s model.bin ] \
  && pass "export" || fail "export"
"$MC" train --data data --init-from model.bin --steps 1 --batch 4 --seq 32 --ckpt-dir ck2 > init.txt 2>&1 \
  && pass "init-from" || fail "init-from: $(tail -3 init.txt)"
finish
