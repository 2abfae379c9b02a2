#!/usr/bin/env bash
# Review (revA) of the fault and input audits: the bugs found, each checked so that it fails without its fix.
#  - export --format hf --out NEW/ (a trailing slash) was refused: "cannot create the directory: No such
#    file or directory", because the parent of "new/" was taken to be "new" (mkdir makes it fine).
#  - --metrics named ckpt_* inside --ckpt-dir was accepted when no such file existed yet: the checkpoint's
#    rename replaced it, and the metrics file, seen as deleted, was recreated by appending to the
#    checkpoint, which then failed its size check (a corrupt checkpoint).
source "$(dirname "$0")/lib.bash"
make_data
T=(--data data --model tiny --batch 2 --seq 32)
"$MC" train "${T[@]}" --steps 2 --ckpt-dir ck >/dev/null 2>&1 || { echo "train failed"; exit 1; }
CK=ck/ckpt_00000002.bin

# ---- export --format hf into a new directory named with a trailing slash ----
for out in new1/ new2// nest/new3/; do
  mkdir -p nest
  if "$MC" export --ckpt "$CK" --out "$out" --format hf >out.txt 2>err.txt && [ -s "$out/model.safetensors" ] \
     && [ -s "$out/config.json" ]; then
    pass "export hf --out $out: written ($(ls "$out" | tr '\n' ' '))"
  else
    fail "export hf --out $out: rc/err: $(cat err.txt)"
  fi
done
# Still refused where the parent really is missing.
PATTERN="--out nodir/new/: cannot create the directory" expect_usage "export hf into a missing parent" \
  export --ckpt "$CK" --out nodir/new/ --format hf

# ---- --metrics with a checkpoint's name in --ckpt-dir ----
PATTERN="--metrics ck2/ckpt_00000002.bin: a ckpt_\* name in --ckpt-dir ck2" expect_usage \
  "--metrics named like a future checkpoint" train "${T[@]}" --steps 4 --ckpt-dir ck2 --ckpt-every 2 \
  --metrics ck2/ckpt_00000002.bin
[ ! -e ck2/ckpt_00000002.bin ] && pass "nothing written under the refused name" \
  || fail "ck2/ckpt_00000002.bin exists after the refusal"
# Another spelling of the same directory, and a temporary's name.
PATTERN="a ckpt_\* name in --ckpt-dir" expect_usage "--metrics as a checkpoint temporary, other spelling" \
  train "${T[@]}" --steps 4 --ckpt-dir ck2 --metrics ./ck2/../ck2/ckpt_00000002.bin.tmp.1.0
# Any other name in --ckpt-dir is fine, and every checkpoint stays intact.
if "$MC" train "${T[@]}" --steps 4 --ckpt-dir ck2 --ckpt-every 2 --metrics ck2/metrics.jsonl >out.txt 2>err.txt \
   && [ "$(wc -l <ck2/metrics.jsonl)" -eq 4 ] && "$MC" info ck2/ckpt_00000002.bin >/dev/null && "$MC" info ck2/ckpt_00000004.bin >/dev/null; then
  pass "--metrics ck2/metrics.jsonl: 4 lines, checkpoints intact"
else
  fail "--metrics in --ckpt-dir: $(cat err.txt)"
fi
finish
