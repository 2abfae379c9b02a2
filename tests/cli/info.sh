# `minicolossus info`: every kind of file we read or write is recognised by content (names here are
# deliberately misleading), --json is one parseable object, and garbage, damaged files, directories of
# nothing, FIFOs and devices are exit 2 with one line on stderr (a damaged file still prints what it could
# read, with "ok": false).
source "$(dirname "$0")/lib.bash"
make_data
"$MC" train --data data --steps 2 --batch 2 --seq 32 --ckpt-dir ck >/dev/null 2>&1 || { fail "tiny train"; finish; }
CK=ck/ckpt_00000002.bin
"$MC" export --ckpt "$CK" --out m32.bin >/dev/null && "$MC" export --ckpt "$CK" --format llmc-bf16 --out m16.bin >/dev/null \
  && "$MC" export --ckpt "$CK" --format hf --out hf >/dev/null || fail "exports"
python3 - <<'PY'
import struct, base64
# llm.c tokenizer (version 2): 3 tokens.
toks = [b"a", b"bc", b"<|endoftext|>"]
open("tok.dat", "wb").write(struct.pack("<256I", 20240328, 2, len(toks), 2, *[0] * 252)
                            + b"".join(bytes([len(t)]) + t for t in toks))
open("ranks.txt", "w").write("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate([b"a", b"b", b"ab"])))
open("badranks.txt", "w").write("YQ== 0\nYg== one\n")
PY
cp data/train_000000.bin data/renamed.dat  # detection by content, not name
cp m16.bin model.json
# info_ok "description" FILE FIELD-REGEX...: exit 0 and stdout matching every regex
info_ok() {
  local what="$1" f="$2"; shift 2
  "$MC" info "$f" > info.txt 2> info_err.txt
  local rc=$? miss=""
  for re in "$@"; do grep -Eq -- "$re" info.txt || miss="$miss '$re'"; done
  if [ $rc -eq 0 ] && [ -z "$miss" ] && [ ! -s info_err.txt ]; then pass "info $what"
  else fail "info $what: rc=$rc missing:$miss $(head -c 300 info_err.txt)"; fi
}
info_ok "shard" data/renamed.dat "^format: token shard" "^tokens: [0-9]+" "^max_token_id: [0-9]+" "^tokenizer: byte" \
  "^vocab_size: 256" "^fingerprint: [0-9a-f]{16}"
info_ok "data directory" data "^format: data directory" "split train .*tokens [0-9]+" "split val" "^data_fingerprint: "
info_ok "tokenizer.json" data/tokenizer.json "^format: tokenizer.json" "^vocab_size: 256"
info_ok "llm.c fp32" m32.bin "^format: llm.c model" "^version: 3" "^dtype: fp32" "^channels: 128" "^parameters: [0-9]+" \
  "^size_ok: true"
info_ok "llm.c bf16 (named .json)" model.json "^version: 5" "^dtype: bf16" "^size_ok: true"
info_ok "checkpoint" "$CK" "^format: minicolossus checkpoint" "^step: 2" "^tokenizer: byte" "^world_size: 1" "^zero: 0" \
  "^data_dir: data" "^  ok: true" "^metadata_ok: true"
info_ok "safetensors" hf/model.safetensors "^format: safetensors" "^tensor_count: 52" '^dtypes: \["F32"\]' \
  "layout: Hugging Face GPT-2: vocab 256" "transformer.wte.weight  dtype F32  shape \[256,128\]"
info_ok "hf directory" hf "Hugging Face model directory" "tensor_count: 52"
info_ok "hf config.json" hf/config.json "^model_type: gpt2" "^n_layer: 4"
info_ok "checkpoint directory" ck "^format: checkpoint directory" "ckpt_00000002.bin"
info_ok "llm.c tokenizer" tok.dat "^format: llm.c tokenizer" "^version: 2" "^vocab_size: 3" "^eot_token: 2"
info_ok "tiktoken ranks" ranks.txt "^format: tiktoken" "^tokens: 3" "^ranks_contiguous: true"
# --json: one object a script can read; the parameter count agrees across the three model files.
python3 - "$MC" "$CK" <<'PY' && pass "--json objects agree (parameters, shapes)" || fail "--json"
import json, subprocess, sys
mc, ck = sys.argv[1:]
j = lambda f: json.loads(subprocess.run([mc, "info", "--json", f], check=True, capture_output=True, text=True).stdout)
a, b, s, c = j("m32.bin"), j("m16.bin"), j("hf/model.safetensors"), j(ck)
assert a["ok"] and a["parameters"] == b["parameters"] == c["tensors"][0]["numel"], (a, b)
# the safetensors file leaves out wte's padded rows (here V = Vp: none)
assert s["parameters"] == a["parameters"] - (a["padded_vocab_size"] - a["vocab_size"]) * a["channels"]
assert len(s["tensors"]) == 52 and s["tensors"][0] == {"name": "transformer.wte.weight", "dtype": "F32", "shape": [256, 128]}
assert c["checksum"]["ok"] and c["checksum"]["stored"] == c["checksum"]["computed"]
PY

# ---- refused: unknown, damaged, not a file -------------------------------------------------------------
printf 'garbage, not any format we know\n' > garbage.bin
: > empty.bin
mkdir emptydir
mkfifo fifo
head -c 3000 m32.bin > cut32.bin
head -c 1500 data/val_000000.bin > cutshard.bin
head -c 200000 "$CK" > cutck.bin
cp "$CK" flipck.bin && printf 'Z' | dd of=flipck.bin bs=1 seek=100000 conv=notrunc 2>/dev/null
head -c 4000 hf/model.safetensors > cutst.bin
head -c 1030 tok.dat > cuttok.bin
PATTERN="garbage.bin: unknown format" expect_usage "garbage" info garbage.bin
PATTERN="empty.bin: unknown format" expect_usage "empty file" info empty.bin
PATTERN="emptydir: a directory holding no" expect_usage "empty directory" info emptydir
PATTERN="fifo: not a regular file (a FIFO)" expect_usage "FIFO" info fifo
PATTERN="/dev/zero: not a regular file (a device)" expect_usage "device" info /dev/zero
PATTERN="nosuch: cannot open" expect_usage "missing file" info nosuch
PATTERN="cut32.bin: the header needs [0-9]* bytes but the file has 3000 (truncated)" expect_usage "truncated llm.c" info cut32.bin
grep -q "^dtype: fp32" out.txt && grep -q "^ok: false" out.txt && pass "truncated llm.c: header still shown" \
  || fail "truncated llm.c report: $(head -c 300 out.txt)"
PATTERN="cutshard.bin: size mismatch: header says [0-9]* tokens" expect_usage "truncated shard" info cutshard.bin
PATTERN="cutck.bin: truncated checkpoint" expect_usage "truncated checkpoint" info cutck.bin
PATTERN="flipck.bin: checksum mismatch: CRC-32 computed [0-9a-f]*, stored" expect_usage "damaged checkpoint" info flipck.bin
grep -q "^step: 2" out.txt && pass "damaged checkpoint: metadata still shown" || fail "damaged checkpoint report"
PATTERN="cutst.bin: truncated safetensors" expect_usage "truncated safetensors" info cutst.bin
PATTERN="cuttok.bin: truncated at token" expect_usage "truncated llm.c tokenizer" info cuttok.bin
PATTERN="badranks.txt: line 2" expect_usage "bad tiktoken line" info badranks.txt
PATTERN="info: " expect_usage "no FILE" info
# A tensor name holding a newline (valid JSON) quoted in the defect: still one line on stderr.
python3 - <<'PY'
import json, struct
h = json.dumps({"a\nb": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}).encode()
open("nlname.st", "wb").write(struct.pack("<Q", len(h)) + h + b"\0" * 4)
PY
PATTERN="nlname.st: .*unknown dtype" expect_usage "a newline in a tensor name: one line" info nlname.st
# A Hugging Face directory whose model.safetensors is damaged: what could be read is shown.
mkdir -p hfcut && cp hf/config.json hfcut/ && cp cutst.bin hfcut/model.safetensors
PATTERN="truncated safetensors" expect_usage "damaged Hugging Face directory" info hfcut
grep -q "^model.safetensors:" out.txt && grep -q "^ok: false" out.txt && pass "damaged hf directory: report shown" \
  || fail "damaged hf directory report: $(head -c 300 out.txt)"
# A file name that is not UTF-8: text and --json still print (the bytes become U+FFFD in JSON).
cp m32.bin "$(printf 'bad\377name.bin')"
"$MC" info --json "$(printf 'bad\377name.bin')" > badname.json 2> badname_err.txt \
  && python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit(0 if j["ok"] and j["dtype"] == "fp32" else 1)' \
     < badname.json && pass "a file name that is not UTF-8 (--json)" || fail "non-UTF-8 name: $(head -c 300 badname_err.txt)"
"$MC" info "$(printf 'bad\377name.bin')" > /dev/null 2>&1 && pass "a file name that is not UTF-8 (text)" \
  || fail "non-UTF-8 name (text)"
"$MC" info --json flipck.bin > flip.json 2>/dev/null
python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit(0 if not j["ok"] and "checksum" in j["defect"] else 1)' < flip.json \
  && pass "--json of a damaged file: ok false, the defect" || fail "--json damaged"
finish
