# Model files both ways: a checkpoint exported as an llm.c model file (fp32 v3, bf16 v5) and as a Hugging
# Face GPT-2 directory; eval and sample read the llm.c files directly (--model-file) with the checkpoint's
# numbers; bad combinations are exit 2 with one line. The safetensors export is checked against numpy by
# scripts/check_hf_export.py when numpy and safetensors import (else that part is reported as skipped).
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
source "$(dirname "$0")/lib.bash"
make_data
"$MC" train --data data --steps 4 --batch 2 --seq 32 --ckpt-dir ck >/dev/null 2>&1 || { fail "tiny train"; finish; }
CK=ck/ckpt_00000004.bin
"$MC" export --ckpt "$CK" --out m32.bin >/dev/null && pass "export (default llmc)" || fail "export llmc"
"$MC" export --ckpt "$CK" --format llmc-bf16 --out m16.bin >/dev/null && pass "export --format llmc-bf16" || fail "export bf16"
"$MC" export --ckpt "$CK" --format hf --out hf >/dev/null && pass "export --format hf" || fail "export hf"
python3 - <<'PY' && pass "file sizes and headers: v3 fp32, v5 bf16 (half the parameter bytes)" || fail "llm.c file headers"
import os, struct
h3 = struct.unpack("<8i", open("m32.bin", "rb").read(32)); h5 = struct.unpack("<8i", open("m16.bin", "rb").read(32))
assert h3[0] == h5[0] == 20240326 and h3[1] == 3 and h5[1] == 5 and h3[2:] == h5[2:], (h3, h5)
assert os.path.getsize("m32.bin") - 1024 == 2 * (os.path.getsize("m16.bin") - 1024)
PY
[ -f hf/model.safetensors ] && [ -f hf/config.json ] && pass "hf/model.safetensors and hf/config.json written" \
  || fail "hf export files missing"
# The byte tokenizer's files: one id per byte, no merges, no special tokens.
python3 - <<'PY' && pass "hf tokenizer files for the byte tokenizer" || fail "hf byte tokenizer files"
import json
v = json.load(open("hf/vocab.json", encoding="utf-8"))
assert sorted(v.values()) == list(range(256)) and v["a"] == 97 and v["\u0120"] == 32 and v["\u010a"] == 10, v
assert open("hf/merges.txt").read() == "#version: 0.2\n"
c = json.load(open("hf/tokenizer_config.json"))
assert c["tokenizer_class"] == "GPT2Tokenizer" and c["eos_token"] is None, c
PY

# ---- eval and sample on the llm.c files: the checkpoint's numbers --------------------------------------
loss() { "$@" 2>&1 | awk '/^val_loss/ {print $2}'; }
ref=$(loss "$MC" eval --ckpt "$CK" --data data)
l32=$(loss "$MC" eval --model-file m32.bin --data data --seq 32)
l16=$(loss "$MC" eval --model-file m16.bin --data data --seq 32)
[ -n "$ref" ] && [ "$ref" = "$l32" ] && pass "eval --model-file fp32 = checkpoint ($l32)" || fail "eval fp32 $l32 vs $ref"
python3 -c "import sys; r, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if r != b and abs(r - b) < 0.01 * r else 1)" \
  "$ref" "${l16:-0}" && pass "eval --model-file bf16 close to the checkpoint ($l16 vs $ref)" || fail "eval bf16 $l16 vs $ref"
"$MC" eval --model-file m32.bin --data data | grep -q "of 128 tokens" && pass "eval --seq defaults to min(maxT, 1024)" \
  || fail "eval default --seq"
S=(--tokens 24 --seed 7 --temperature 0.9)
"$MC" sample --ckpt "$CK" "${S[@]}" > s_ck.txt 2>&1
"$MC" sample --model-file m32.bin "${S[@]}" > s_32.txt 2>&1
"$MC" sample --model-file m32.bin "${S[@]}" --no-kv-cache > s_nokv.txt 2>&1
"$MC" sample --model-file m32.bin "${S[@]}" --data data > s_data.txt 2>&1
cmp -s s_ck.txt s_32.txt && [ -s s_ck.txt ] && pass "sample --model-file fp32 = checkpoint" || fail "sample differs: $(head -c 200 s_32.txt)"
cmp -s s_32.txt s_nokv.txt && pass "sample --no-kv-cache: the same tokens" || fail "--no-kv-cache differs"
cmp -s s_32.txt s_data.txt && pass "sample --data: the directory's tokenizer (byte)" || fail "sample --data differs"
"$MC" sample --model-file m16.bin "${S[@]}" --prompt "line 1" > s_16.txt 2>&1 && grep -q "^line 1" s_16.txt \
  && pass "sample --model-file bf16 with a prompt" || fail "sample bf16: $(head -c 200 s_16.txt)"
"$MC" train --data data --steps 1 --batch 2 --seq 32 --init-from m16.bin --ckpt-dir ck16 >/dev/null 2>&1 \
  && pass "train --init-from a bf16 file" || fail "train --init-from m16.bin"
"$MC" export --model-file m16.bin --format hf --out hf16 >/dev/null && "$MC" info hf16/model.safetensors >/dev/null \
  && pass "export --model-file (bf16) --format hf" || fail "export from a model file"

# A source whose name is not UTF-8 (recorded in the safetensors metadata, which must be JSON).
BADNAME=$(printf 'm\377.bin'); cp m32.bin "$BADNAME"
"$MC" export --model-file "$BADNAME" --format hf --out hfbad >/dev/null 2>hfbad_err.txt \
  && "$MC" info hfbad/model.safetensors >/dev/null && pass "export --format hf from a file name that is not UTF-8" \
  || fail "export from a non-UTF-8 name: $(head -c 300 hfbad_err.txt)"

# ---- bad combinations --------------------------------------------------------------------------------
PATTERN="--model-file.*pass --data" expect_usage "eval --model-file without --data" eval --model-file m32.bin
PATTERN="--model-file.*pass --data" expect_usage "eval --model-file with an empty --data" eval --model-file m32.bin --data ""
PATTERN="exactly one of --ckpt and --model-file" expect_usage "eval with both" eval --ckpt "$CK" --model-file m32.bin --data data
PATTERN="exactly one of --ckpt and --model-file" expect_usage "sample with neither" sample
PATTERN="exactly one of --ckpt and --model-file" expect_usage "export with neither" export --out x.bin
PATTERN="m32.bin: this is an llm.c model file.*--model-file" expect_usage "llm.c file as --ckpt" eval --ckpt m32.bin --data data
PATTERN="this is a minicolossus checkpoint.*--ckpt" expect_usage "checkpoint as --model-file" sample --model-file "$CK"
PATTERN="--format onnx: unknown format" expect_usage "unknown --format" export --ckpt "$CK" --format onnx --out x
PATTERN="--seq 129: must be in \[1, 128\]" expect_usage "--seq beyond maxT" eval --model-file m32.bin --data data --seq 129
# A GPT-2 vocabulary data directory (tokens 300 < 50257, no tokenizer.json) against the byte-level model.
mkdir -p gdata && python3 - <<'PY'
import struct
for n in ("train", "val"):
    open(f"gdata/{n}_000000.bin", "wb").write(struct.pack("<256i", 20240520, 1, 500, *[0] * 253) + struct.pack("<500H", *[300] * 500))
PY
PATTERN="--data gdata: vocabulary 50257 does not match --model-file m32.bin's 256" expect_usage "model-file vocab mismatch (eval)" \
  eval --model-file m32.bin --data gdata
PATTERN="--data gdata: vocabulary 50257 does not match --model-file m16.bin's 256" expect_usage "model-file vocab mismatch (sample)" \
  sample --model-file m16.bin --data gdata
head -c 5000 m16.bin > cut16.bin
PATTERN="--model-file cut16.bin: llm.c model version 5 (bf16).*truncated" expect_usage "truncated bf16 file" \
  eval --model-file cut16.bin --data data
mkfifo fifo
PATTERN="--model-file fifo: not a regular file (a FIFO)" expect_usage "FIFO as --model-file" sample --model-file fifo
PATTERN="--out m32.bin: exists and is not a directory" expect_usage "export hf onto a file" export --ckpt "$CK" --format hf --out m32.bin
PATTERN="--out nodir/hf: cannot create" expect_usage "export hf under a missing directory" export --ckpt "$CK" --format hf --out nodir/hf

# ---- the safetensors export against numpy (and transformers where it imports) ----------------------------
if python3 -c "import numpy, safetensors" 2>/dev/null; then
  if python3 "$SRC/scripts/check_hf_export.py" --mc "$MC" --ckpt "$CK" --data data --work chk --max-seqs 8 > chk.txt 2>&1; then
    pass "check_hf_export.py: $(grep '^figures' chk.txt | head -1)"
  else
    fail "check_hf_export.py: $(grep -v '^ok' chk.txt | head -c 600)"
  fi
else
  echo "skip - check_hf_export.py (numpy/safetensors not importable; PYTHONPATH=DIR from pip install --target DIR)"
fi
finish
