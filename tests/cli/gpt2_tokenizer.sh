# prepare --tokenizer gpt2 end to end: valid shards that decode back to the text (with the ranks file,
# independently of the binary), tokenizer.json, a tiny model trained 2 steps and sampled, binary input,
# and a bad ranks file refused with exit 2 and one line. Skipped (77) without the ranks file.
source "$(dirname "$0")/lib.bash"
# lib.bash pointed MC_CACHE_DIR at a scratch cache; the binary still looks in the user's cache.
RANKS=""
for f in "${MC_GPT2_TIKTOKEN:-}" "$(dirname "$MC")/../share/minicolossus/gpt2.tiktoken" \
         "${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/minicolossus/gpt2.tiktoken"; do
  [ -n "$f" ] && [ -f "$f" ] && { RANKS=$f; break; }
done
[ -n "$RANKS" ] || { echo "skipped: no gpt2.tiktoken (run scripts/setup.sh)"; exit 77; }
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3

# shard_check DIR TEXTFILE: the shards are valid llm.c shards, start with <|endoftext|>, and the ids
# decode (with the ranks file, base64) to exactly the text's bytes.
shard_check() {
  "$PY" - "$1" "$2" "$RANKS" <<'PY'
import base64, struct, sys
d, text_file, ranks_file = sys.argv[1:]
table = {}
for line in open(ranks_file, "rb"):
    tok, rank = line.split()
    table[int(rank)] = base64.b64decode(tok)
ids = []
for part in ("train", "val"):
    data = open(f"{d}/{part}_000000.bin", "rb").read()
    h = struct.unpack("<256i", data[:1024])
    assert h[0] == 20240520 and h[1] == 1, h[:3]
    assert len(data) == 1024 + 2 * h[2] and h[2] > 0, (part, len(data), h[2])
    ids += struct.unpack(f"<{h[2]}H", data[1024:])
assert ids[0] == 50256, ids[:3]
assert all(i < 50256 for i in ids[1:]), max(ids[1:])
got = b"".join(table[i] for i in ids[1:])
want = open(text_file, "rb").read()
assert got == want, (len(got), len(want))
PY
}

"$PY" - <<'PY' >corpus.txt
import itertools
lines = ["In the beginning God created the heaven and the earth.", "Café naïve  Straße — 日本語のテキスト 🎉🎉",
         "   indented 12345 3.14\t\ttabs", "It's we'll they've I'M   ", ""]
print("\n".join(itertools.islice(itertools.cycle(lines), 2000)))
PY
"$MC" prepare --input corpus.txt --out data --tokenizer gpt2 >prep.txt 2>prep_err.txt \
  && grep -q "gpt2 tokenizer, vocab 50257" prep.txt && pass "prepare: $(cat prep.txt)" \
  || fail "prepare: $(cat prep.txt prep_err.txt)"
[ ! -s prep_err.txt ] && pass "no progress lines for a small input" || fail "stderr: $(head -3 prep_err.txt)"
[ "$(cat data/tokenizer.json)" = '{"tokenizer":"gpt2","vocab_size":50257}' ] \
  && pass "tokenizer.json" || fail "tokenizer.json: $(cat data/tokenizer.json)"
shard_check data corpus.txt && pass "shards valid, decode to the text" || fail "shard check"
# llm.c's tokenizer file beside the shards (version 2, GPT-2's 50257 tokens, eot 50256), for llm.c's trainer.
RANKS="$RANKS" python3 - <<'PY' && pass "gpt2_tokenizer.bin for llm.c" || fail "gpt2_tokenizer.bin"
import base64, os, struct
raw = open("data/gpt2_tokenizer.bin", "rb").read()
magic, version, vocab, eot = struct.unpack("<4I", raw[:16])
assert (magic, version, vocab, eot) == (20240328, 2, 50257, 50256), (magic, version, vocab, eot)
toks, pos = [], 1024
while pos < len(raw):
    n = raw[pos]; toks.append(raw[pos + 1:pos + 1 + n]); pos += 1 + n
ranks = [base64.b64decode(l.split()[0]) for l in open(os.environ["RANKS"], "rb") if l.strip()]
assert toks == ranks + [b"<|endoftext|>"], len(toks)
PY

"$MC" train --data data --model tiny --steps 2 --batch 2 --seq 32 --ckpt-dir ck >train.txt 2>&1 \
  && pass "tiny model trains 2 steps on gpt2 shards" || fail "train: $(tail -5 train.txt)"
CK=$(ls ck/ckpt_*.bin 2>/dev/null | tail -1)
if [ -n "$CK" ]; then
  "$MC" sample --ckpt "$CK" --prompt "In the beginning" --tokens 8 --top-k 5 >sample.txt 2>&1 \
    && [ "$(head -c 16 sample.txt)" = "In the beginning" ] && ! grep -q '<[0-9]*>' sample.txt \
    && pass "sample prints text: $(head -c 80 sample.txt | tr '\n' ' ')" || fail "sample: $(head -c 300 sample.txt)"
  # export --format hf writes GPT-2's tokenizer files: 50257 ids, 50000 merges in rank order.
  "$MC" export --ckpt "$CK" --format hf --out hf >export.txt 2>&1 && python3 - <<'PY' \
    && pass "export --format hf writes vocab.json, merges.txt, tokenizer_config.json" || fail "hf tokenizer files: $(tail -3 export.txt)"
import json
v = json.load(open("hf/vocab.json", encoding="utf-8"))
assert len(v) == 50257 and sorted(v.values()) == list(range(50257)), len(v)
assert v["<|endoftext|>"] == 50256 and v["\u0120the"] == 262 and v["Hello"] == 15496
m = open("hf/merges.txt", encoding="utf-8").read().split("\n")
assert m[0] == "#version: 0.2" and m[1] == "\u0120 t" and len(m) == 50002 and m[-1] == "", (m[:3], len(m))
assert all(v[a + b] == 256 + i for i, (a, b) in enumerate(l.split(" ") for l in m[1:-1]))
c = json.load(open("hf/tokenizer_config.json"))
assert c["eos_token"] == "<|endoftext|>" and c["model_max_length"] == 128, c
assert json.load(open("hf/config.json"))["eos_token_id"] == 50256
PY
else
  fail "no checkpoint after training"
fi

# Bytes that are not UTF-8: encoded byte-wise, never a crash or a hang.
head -c 300000 /dev/urandom >binary.dat
timeout 60 "$MC" prepare --input binary.dat --out bin --tokenizer gpt2 >/dev/null 2>bin_err.txt \
  && shard_check bin binary.dat && pass "binary input round-trips" || fail "binary input: $(head -3 bin_err.txt)"

# Bad ranks files.
cp "$RANKS" edited.tiktoken && printf 'X' | dd of=edited.tiktoken bs=1 seek=100 conv=notrunc 2>/dev/null
MC_GPT2_TIKTOKEN=$PWD/edited.tiktoken PATTERN="edited.tiktoken.*sha256" \
  expect_usage "ranks file with a wrong checksum" prepare --input corpus.txt --out o1 --tokenizer gpt2
[ ! -e o1 ] && pass "nothing written for a bad ranks file" || fail "o1 was created"
head -c 1000 "$RANKS" >short.tiktoken
MC_GPT2_TIKTOKEN=$PWD/short.tiktoken PATTERN="short.tiktoken.*sha256" \
  expect_usage "truncated ranks file" prepare --input corpus.txt --out o2 --tokenizer gpt2
MC_GPT2_TIKTOKEN=$PWD/none.tiktoken PATTERN="MC_GPT2_TIKTOKEN.*none.tiktoken" \
  expect_usage "missing ranks file" prepare --input corpus.txt --out o3 --tokenizer gpt2
# export --format hf without the ranks file: the weights and config all the same, a warning for the tokenizer.
if [ -n "$CK" ]; then
  MC_GPT2_TIKTOKEN=$PWD/none.tiktoken "$MC" export --ckpt "$CK" --format hf --out hf_noranks >out.txt 2>err.txt &&
    [ -f hf_noranks/model.safetensors ] && [ -f hf_noranks/config.json ] && [ ! -e hf_noranks/vocab.json ] &&
    grep -q "warning: not writing the tokenizer's files: MC_GPT2_TIKTOKEN .*none.tiktoken" err.txt &&
    pass "export hf without the ranks file: weights, config and a warning" || fail "export hf without ranks: $(cat err.txt)"
fi
mkdir -p adir
MC_GPT2_TIKTOKEN=$PWD/adir PATTERN="adir: not a regular file" \
  expect_usage "directory as ranks file" prepare --input corpus.txt --out o4 --tokenizer gpt2
PATTERN="--tokenizer nope" expect_usage "unknown tokenizer" prepare --input corpus.txt --out o5 --tokenizer nope
finish
