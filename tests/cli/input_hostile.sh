# Hostile input to every command, by class (each case failed before its fix):
#  - numbers on the command line: plain decimal only (Note [Numbers on the command line], commands.cpp);
#  - stdout that cannot be written: reported, exit 1, never death by SIGPIPE (Note [Standard output is
#    checked], main.cpp);
#  - outputs: export never replaces a checkpoint or shard (its own input included) and checks --out
#    before loading for every format; prepare refuses foreign shards in --out; a directory that takes
#    no files is exit 2 before any work (Note [export's --out], Note [prepare's output directory]);
#  - info's text form stays one line per key whatever a name holds;
#  - eval sizes its activations by the sequences there are, not by --batch.
source "$(dirname "$0")/lib.bash"
make_data
"$MC" train --data data --steps 1 --batch 2 --seq 32 --ckpt-dir ck >/dev/null 2>&1 || fail "tiny train failed"
CK=ck/ckpt_00000001.bin
[ -f "$CK" ] || { echo "no checkpoint"; exit 1; }

# ---- numbers ------------------------------------------------------------------------------------
# "010" is ten, not eight (CLI11 alone reads it as octal).
"$MC" eval --ckpt "$CK" --seq 010 --max-seqs 2 >out.txt 2>err.txt
grep -q "sequences of 10 tokens" out.txt && pass "--seq 010 is ten" || fail "--seq 010: $(cat out.txt err.txt)"
for v in 0x10 " 3" "3 " 1_0 true 1e3 0b11 "1 0"; do
  PATTERN="^minicolossus: --seq $v: not a whole number in decimal" expect_usage "eval --seq '$v'" \
    eval --ckpt "$CK" --seq "$v"
done
PATTERN="^minicolossus: --seq: empty value" expect_usage "empty --seq (was: 0)" eval --ckpt "$CK" --seq ""
PATTERN="^minicolossus: --max-seqs: empty value" expect_usage "empty --max-seqs (was: all)" \
  eval --ckpt "$CK" --max-seqs ""
PATTERN="^minicolossus: --seed -1: not a whole number >= 0" expect_usage "negative unsigned seed (was: 2^64-1)" \
  sample --ckpt "$CK" --seed -1
PATTERN="^minicolossus: --seed 99999999999999999999999: out of range" expect_usage "seed past 2^64 (was: clamped)" \
  sample --ckpt "$CK" --seed 99999999999999999999999
for v in 0x1p3 "" 1e 1.2.3 "1e3 "; do
  PATTERN="^minicolossus: --temperature" expect_usage "sample --temperature '$v'" \
    sample --ckpt "$CK" --temperature "$v"
done
# nan, inf and overflow reach the flag's own range check, which names the value.
PATTERN="^minicolossus: --temperature inf: must" expect_usage "sample --temperature 1e99999" \
  sample --ckpt "$CK" --temperature 1e99999
PATTERN="^minicolossus: --steps: empty value" expect_usage "train --steps ''" train --data data --ckpt-dir ck2 --steps ""
PATTERN="^minicolossus: --batch 0x10: not" expect_usage "simulate --batch 0x10" simulate --batch 0x10
PATTERN="^minicolossus: --val-fraction: empty value" expect_usage "prepare --val-fraction ''" \
  prepare --input corpus.txt --out p --val-fraction ""
PATTERN="^minicolossus: --np: empty value" expect_usage "launch --np ''" launch --np "" -- --ckpt-dir ck3
"$MC" sample --ckpt "$CK" --seed 18446744073709551615 --tokens 2 --temperature .5 >/dev/null 2>err.txt &&
  pass "largest seed and '.5' accepted" || fail "seed 2^64-1: $(cat err.txt)"

# ---- stdout -------------------------------------------------------------------------------------
# A full disk: one line naming stdout, exit 1 (was: exit 0, the output lost).
expect_stdout_error() {
  local what="$1"; shift
  timeout -k 5 60 "$MC" "$@" >/dev/full 2>err.txt </dev/null
  local rc=$?
  if [ $rc -eq 1 ] && [ "$(wc -l <err.txt)" -eq 1 ] && grep -q "minicolossus: stdout: write failed" err.txt; then
    pass "$what > /dev/full -> exit 1: $(cat err.txt)"
  else
    fail "$what > /dev/full: rc=$rc: $(head -c 300 err.txt)"
  fi
}
expect_stdout_error "info --json" info --json "$CK"
expect_stdout_error "info" info data
expect_stdout_error "eval" eval --ckpt "$CK" --max-seqs 2
expect_stdout_error "sample" sample --ckpt "$CK" --tokens 3
expect_stdout_error "simulate" simulate
expect_stdout_error "simulate --collectives" simulate --collectives --gpus 8
expect_stdout_error "export" export --ckpt "$CK" --out m0.bin
expect_stdout_error "prepare" prepare --input corpus.txt --out p0
expect_stdout_error "--help" --help
expect_stdout_error "eval --help" eval --help
# A reader that goes away: no SIGPIPE death (rc 141 before), and sample stops generating at once
# instead of computing 100000 tokens for nobody.
for args in "sample --ckpt $CK --tokens 100000" "simulate --collectives" "info --json $CK"; do
  rc=$( { timeout -k 5 60 "$MC" $args 2>err.txt; echo $? >rc.txt; } | head -c 1 >/dev/null; cat rc.txt)
  if [ "$rc" = 0 ] || { [ "$rc" = 1 ] && grep -q "stdout: write failed" err.txt; }; then
    pass "$args | head -c 1 -> rc $rc"
  else
    fail "$args | head -c 1: rc=$rc (141 = SIGPIPE, 124 = kept generating): $(head -c 300 err.txt)"
  fi
done
# train's stdout is a log: a lost reader does not fail a finished run.
"$MC" train --data data --steps 2 --batch 2 --seq 32 --ckpt-dir ckt >/dev/full 2>err.txt &&
  pass "train > /dev/full still exits 0" || fail "train > /dev/full: $(cat err.txt)"

# ---- outputs ------------------------------------------------------------------------------------
cp "$CK" keep.bin
PATTERN="--out $CK: is a minicolossus checkpoint" expect_usage "export over its own checkpoint" \
  export --ckpt "$CK" --out "$CK"
cmp -s "$CK" keep.bin && pass "the checkpoint is intact" || fail "export replaced its own --ckpt"
PATTERN="--out data/train_000000.bin: is a token shard" expect_usage "export over a shard" \
  export --ckpt "$CK" --out data/train_000000.bin
mkdir -p hfck && cp "$CK" hfck/model.safetensors
PATTERN="hfck/model.safetensors: is a minicolossus checkpoint" expect_usage "export hf over a checkpoint" \
  export --ckpt "$CK" --out hfck --format hf
"$MC" export --ckpt "$CK" --out m.bin >/dev/null && "$MC" export --model-file m.bin --out m.bin --format llmc-bf16 \
  >/dev/null && "$MC" info m.bin | grep -q "dtype: bf16" && pass "an llm.c model file is converted in place" ||
  fail "export --model-file m.bin --out m.bin"
# --format hf checks --out before loading the model, like the other formats.
mkfifo fifo
PATTERN="--out fifo: exists and is not a directory" expect_usage "export hf --out FIFO before loading" \
  export --ckpt missing.bin --out fifo --format hf
PATTERN="--out /nonexistent/x" expect_usage "export hf --out without parent before loading" \
  export --ckpt missing.bin --out /nonexistent/x --format hf
# A directory that takes no new file: exit 2 naming --out (was exit 1 naming a temporary file).
if [ -d /proc/self ]; then
  PATTERN="--out /proc/m.bin: cannot write into /proc" expect_usage "export into /proc" \
    export --ckpt "$CK" --out /proc/m.bin
  PATTERN="--out /proc: cannot write into /proc" expect_usage "prepare into /proc" \
    prepare --input corpus.txt --out /proc
fi
mkdir -p mixed && cp data/val_000000.bin mixed/train_000007.bin
PATTERN="--out mixed: already holds the shard train_000007.bin" expect_usage "prepare into foreign shards" \
  prepare --input corpus.txt --out mixed
"$MC" prepare --input corpus.txt --out data >/dev/null && pass "prepare again into its own output" ||
  fail "prepare into its own output"

# More than 2^31 - 1 byte tokens do not fit one shard's int32 count: refused from the file's size at
# once (was: read, tokenized, then exit 1 inside write_shard). A sparse file costs no disk; the memory
# limit makes the old behaviour fail quickly instead of reading 2.6 GB.
if truncate -s 2600000000 big.txt 2>/dev/null; then
  USAGE_VMEM_KB=2000000 USAGE_TIMEOUT=20 PATTERN="--input big.txt: 2600000000 tokens make a train shard of" \
    expect_usage "prepare of 2.6e9 bytes" prepare --input big.txt --out bigout
  [ ! -e bigout ] && pass "nothing created for it" || fail "bigout was created"
  rm -f big.txt
fi

# ---- launch's own flags -------------------------------------------------------------------------
PATTERN="^minicolossus: --max-restarts 2147483647: must be in \[0, 1000000\]" \
  expect_usage "launch --max-restarts 2^31-1 (was: attempt 1/-2147483648)" \
  launch --np 1 --max-restarts 2147483647 -- --ckpt-dir ckl
PATTERN="^minicolossus: --probe-s inf: must be in (0, 86400\]" expect_usage "launch --probe-s inf (a probe that never times out)" \
  launch --np 1 --probe-s inf -- --ckpt-dir ckl

# ---- info's text form ---------------------------------------------------------------------------
nl=$(printf 'two\nlines')
cp -r data "$nl"
"$MC" info "$nl" >out.txt 2>err.txt || fail "info of a directory named with a newline: $(cat err.txt)"
if grep -qx "lines" out.txt || ! grep -q 'file: two\\nlines' out.txt; then
  fail "info printed a name's newline raw: $(head -3 out.txt)"
else
  pass "info keeps a name's newline on its line"
fi

# ---- model files with non-finite weights ---------------------------------------------------------
# Right header and size, one NaN weight: eval said "val_loss nan" and info "ok", both exit 0.
"$MC" export --ckpt "$CK" --out nan.bin >/dev/null || fail "export nan.bin"
printf '\x00\x00\xc0\x7f' | dd of=nan.bin bs=1 seek=1028 conv=notrunc 2>/dev/null
PATTERN="--model-file nan.bin: parameter wte\[1\] is NaN" expect_usage "eval of a NaN weight" \
  eval --model-file nan.bin --data data
PATTERN="--model-file nan.bin: parameter wte\[1\] is NaN" expect_usage "sample of a NaN weight" \
  sample --model-file nan.bin
PATTERN="nan.bin: 1 parameters are NaN or infinite" expect_usage "info of a NaN weight" info nan.bin

# ---- simulate: names and text from a --hardware file ------------------------------------------
# A file name that is not UTF-8 ended --json with exit 1 (nlohmann's type_error 316); a description
# holding a newline broke the table's "# ..." comment line in two.
hw=$(printf 'hw\xff.json')
printf '{"base": "h100", "description": "two\\nlines"}' >"$hw"
"$MC" simulate --json --hardware "$hw" --gpus 8 >out.txt 2>err.txt && python3 -c "import json,sys; json.load(open('out.txt'))" &&
  pass "simulate --json with a non-UTF-8 --hardware name" || fail "simulate --json --hardware non-UTF-8: $(cat err.txt)"
"$MC" simulate --hardware "$hw" --gpus 8 >out.txt 2>err.txt || fail "simulate --hardware: $(cat err.txt)"
if grep -aqx "lines" out.txt || ! LC_ALL=C grep -aq '^# hardware .*two\\nlines' out.txt; then
  fail "simulate printed a description's newline raw: $(head -3 out.txt)"
else
  pass "simulate keeps a description on its comment line"
fi

# ---- train with paths that are not UTF-8 ----------------------------------------------------------
# The data, checkpoint and metrics paths go into JSON (the config line, metrics, checkpoint metadata):
# nlohmann's dump threw type_error 316 and train exited 1 before its first step.
bd=$(printf 'data\xff') bc=$(printf 'ck\xfe') bm=$(printf 'm\xfd.jsonl')
cp -r data "$bd"
if "$MC" train --data "$bd" --steps 2 --batch 2 --seq 16 --ckpt-dir "$bc" --metrics "$bm" >out.txt 2>err.txt &&
   "$MC" train --data "$bd" --steps 3 --batch 2 --seq 16 --ckpt-dir "$bc" --resume >>out.txt 2>>err.txt &&
   [ -f "$bc/ckpt_00000003.bin" ] && python3 -c "import json,sys; [json.loads(l) for l in open(sys.argv[1], 'rb')]" "$bm"; then
  pass "train, checkpoint, metrics and resume under non-UTF-8 paths"
else
  fail "non-UTF-8 paths: $(head -c 300 err.txt)"
fi

# ---- eval --batch -------------------------------------------------------------------------------
# 200000 sequences of activations would be ~40 GiB; the validation set has a few dozen.
(ulimit -v 6000000; "$MC" eval --ckpt "$CK" --batch 200000 >out.txt 2>err.txt) &&
  grep -q val_loss out.txt && pass "eval --batch 200000 sizes by the data" ||
  fail "eval --batch 200000: $(cat err.txt)"
finish
