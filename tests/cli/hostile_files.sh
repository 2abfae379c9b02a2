# Hostile input files, end to end: a FIFO, directory or device where a file belongs, llm.c headers
# with huge fields, checkpoints with a valid checksum but bad metadata, output paths that cannot be
# written. Each must end quickly (run under `timeout`: a hang fails, it does not stall the suite)
# with exit 2 and one line on stderr naming the flag or the file.
source "$(dirname "$0")/lib.bash"
command -v python3 >/dev/null || { echo "python3 needed"; exit 77; }
make_data
# Every case under a 30 s timeout and a 2 GiB address-space limit (lib.bash's expect_usage).
USAGE_TIMEOUT=30
USAGE_VMEM_KB=2097152
TR=(train --data data --steps 1 --batch 2 --seq 32)
"$MC" "${TR[@]}" --ckpt-dir ck >/dev/null 2>&1 || fail "tiny train failed"
CK=ck/ckpt_00000001.bin
[ -f "$CK" ] || { fail "no checkpoint written"; finish; }

# ---- non-regular files where a file belongs -------------------------------------------------------
mkfifo fifo
PATTERN="--init-from fifo: not a regular file (a FIFO)" expect_usage "FIFO as --init-from" "${TR[@]}" --init-from fifo
PATTERN="/dev/null: not a regular file (a device)" expect_usage "/dev/null as --init-from" "${TR[@]}" --init-from /dev/null
PATTERN="--init-from data:" expect_usage "directory as --init-from" "${TR[@]}" --init-from data
for cmd in eval sample export; do
  extra=(); [ $cmd = export ] && extra=(--out m.bin)
  PATTERN="fifo: not a regular file (a FIFO)" expect_usage "FIFO as --ckpt ($cmd)" $cmd --ckpt fifo "${extra[@]}"
  PATTERN="data: not a regular file (a directory)" expect_usage "directory as --ckpt ($cmd)" $cmd --ckpt data "${extra[@]}"
done
PATTERN="/dev/zero: not a regular file (a device)" expect_usage "/dev/zero as --ckpt" eval --ckpt /dev/zero
PATTERN="--input fifo: not a regular file (a FIFO)" expect_usage "FIFO as prepare --input" prepare --input fifo --out p
PATTERN="--input data: not a regular file (a directory)" expect_usage "directory as prepare --input" prepare --input data --out p
mkdir -p fd && cp data/*.bin data/tokenizer.json fd/ && mkfifo fd/train_000001.bin
PATTERN="fd/train_000001.bin is not a regular file (a FIFO)" expect_usage "FIFO as a shard in --data" train --data fd --steps 1
rm fd/train_000001.bin && rm fd/tokenizer.json && mkfifo fd/tokenizer.json
PATTERN="fd/tokenizer.json: not a regular file (a FIFO)" expect_usage "FIFO as tokenizer.json" train --data fd --steps 1
PATTERN="fd/tokenizer.json: not a regular file (a FIFO)" expect_usage "FIFO as tokenizer.json (eval)" eval --ckpt "$CK" --data fd

# ---- outputs ---------------------------------------------------------------------------------------
PATTERN="--out nodir/m.bin: directory nodir does not exist" expect_usage "export --out into a missing directory" \
  export --ckpt "$CK" --out nodir/m.bin
PATTERN="--out data: not a regular file (a directory)" expect_usage "export --out a directory" export --ckpt "$CK" --out data
ls nodir >/dev/null 2>&1 && fail "export created nodir" || pass "nothing written for a refused --out"

# ---- llm.c model headers with huge or inconsistent fields ------------------------------------------
"$MC" export --ckpt "$CK" --out good.bin >/dev/null 2>&1 || fail "export of a good checkpoint"
llmc() {  # llmc FILE maxT V L NH C Vp [version]: good.bin's parameters under a rewritten header
  python3 - "$@" <<'PY'
import struct, sys
out, *f = sys.argv[1:]
f = [int(x) for x in f]
data = open("good.bin", "rb").read()
h = list(struct.unpack("<256i", data[:1024]))
h[2:8] = f[:6]
if len(f) > 6: h[1] = f[6]
open(out, "wb").write(struct.pack("<256i", *h) + data[1024:])
PY
}
read -r maxT V L NH C Vp < <(python3 -c 'import struct; h=struct.unpack("<256i", open("good.bin","rb").read(1024)); print(*h[2:8])')
llmc h1.bin "$maxT" "$V" 1000000000 "$NH" "$C" "$Vp"
PATTERN="h1.bin.*num_layers 1000000000" expect_usage "llm.c header with a billion layers" "${TR[@]}" --init-from h1.bin
llmc h2.bin "$maxT" "$V" "$L" "$NH" 2000000000 "$Vp"
PATTERN="h2.bin.*channels 2000000000" expect_usage "llm.c header with 2e9 channels" "${TR[@]}" --init-from h2.bin
llmc h3.bin "$maxT" "$V" 1000 64 65536 "$Vp"
PATTERN="h3.bin.*needs" expect_usage "llm.c header in bounds but far larger than the file" "${TR[@]}" --init-from h3.bin
llmc h4.bin "$maxT" "$V" "$L" 0 "$C" "$Vp"
PATTERN="h4.bin.*num_heads 0" expect_usage "llm.c header with 0 heads" "${TR[@]}" --init-from h4.bin
llmc h5.bin "$maxT" 300 "$L" "$NH" "$C" 256
PATTERN="h5.bin.*padded_vocab_size 256 is smaller than vocab_size 300" expect_usage "llm.c vocab > padded" "${TR[@]}" --init-from h5.bin
llmc h6.bin "$maxT" "$V" "$L" "$NH" "$C" "$Vp" 7
PATTERN="h6.bin: llm.c model version 7 is not supported" expect_usage "llm.c unknown version" "${TR[@]}" --init-from h6.bin
"$MC" "${TR[@]}" --init-from good.bin --ckpt-dir ck_good >/dev/null 2>&1 && pass "the exported model trains" \
  || fail "--init-from good.bin failed"

# ---- checkpoints with a valid checksum and bad metadata --------------------------------------------
mutate() {  # mutate OUT PYTHON-STATEMENT (on dict m, the metadata; t = list of tensors as bytes)
  python3 - "$CK" "$@" <<'PY'
import json, struct, sys, zlib
src, out, stmt = sys.argv[1:4]
b = open(src, "rb").read()
jl = struct.unpack("<Q", b[8:16])[0]
m = json.loads(b[16:16 + jl])
off = (16 + jl + 63) // 64 * 64
t = {}
for e in m["tensors"]:
    t[e["name"]] = b[off:off + 4 * e["numel"]]; off += 4 * e["numel"]
exec(stmt)
m["tensors"] = [{"name": k, "dtype": "f32", "numel": len(v) // 4} for k, v in t.items()]
js = json.dumps(m).encode()
head = b"MCCKPT01" + struct.pack("<Q", len(js)) + js
head += b"\0" * ((len(head) + 63) // 64 * 64 - len(head))
body = head + b"".join(t.values())
open(out, "wb").write(body + struct.pack("<II", zlib.crc32(body) & 0xffffffff, 0) + b"MCCKEND1")
PY
}
mutate same.bin "pass"
"$MC" eval --ckpt same.bin --data data --max-seqs 2 >/dev/null 2>&1 && pass "the mutation tool keeps a good checkpoint good" \
  || fail "mutation tool broke an unmodified checkpoint: $("$MC" eval --ckpt same.bin --data data 2>&1 | head -c 300)"
mutate m1.bin 'm["model"]["num_heads"] = 0'
PATTERN="m1.bin: model num_heads 0" expect_usage "checkpoint with 0 heads (eval)" eval --ckpt m1.bin --data data
PATTERN="m1.bin: model num_heads 0" expect_usage "checkpoint with 0 heads (sample)" sample --ckpt m1.bin --tokens 3
PATTERN="m1.bin: model num_heads 0" expect_usage "checkpoint with 0 heads (export)" export --ckpt m1.bin --out m1_out.bin
[ -e m1_out.bin ] && fail "export wrote an invalid model" || pass "export wrote nothing for an invalid checkpoint"
mutate m2.bin 'm["model"]["vocab_size"] = m["model"]["padded_vocab_size"] + 1'
PATTERN="m2.bin: model padded_vocab_size" expect_usage "checkpoint with vocab > padded (sample)" sample --ckpt m2.bin --tokens 3
mutate m3.bin 'm["step"] = -5'
PATTERN='m3.bin: checkpoint metadata "step" -5' expect_usage "checkpoint with a negative step" eval --ckpt m3.bin --data data
mutate m4.bin 'm["step"] = 2**31'
PATTERN='m4.bin: checkpoint metadata "step" 2147483648' expect_usage "checkpoint with step 2^31" sample --ckpt m4.bin
mutate m5.bin 'del m["seq"]'
PATTERN='m5.bin: checkpoint metadata has no "seq"' expect_usage "checkpoint without seq" eval --ckpt m5.bin --data data
mutate m6.bin 'm["model"] = "tiny"'
PATTERN='m6.bin: checkpoint metadata "model" is not an object' expect_usage "checkpoint with a string model" export --ckpt m6.bin --out x.bin
mutate m7.bin 'm["seq"] = "32"'
PATTERN='m7.bin: checkpoint metadata "seq" is "32", not an integer' expect_usage "checkpoint with a string seq" eval --ckpt m7.bin --data data
mutate m8.bin 't["params"] = t["params"][:-4]'
PATTERN="m8.bin: checkpoint tensor params has" expect_usage "checkpoint with a short params tensor" sample --ckpt m8.bin
mutate m9.bin 'm["model"]["num_layers"] = 10**9'
PATTERN="m9.bin: model num_layers 1000000000" expect_usage "checkpoint with a billion layers" eval --ckpt m9.bin --data data
# train --resume refuses a checkpoint it cannot trust, naming it (it may then start afresh, exit 0,
# or stop with a usage error, exit 2: the trainer's choice), and never crashes on it.
mkdir -p ckr && cp m1.bin ckr/ckpt_00000001.bin
(ulimit -v 2097152; timeout -k 5 60 "$MC" "${TR[@]}" --ckpt-dir ckr --resume) >out.txt 2>err.txt
rc=$?
if { [ $rc -eq 0 ] || [ $rc -eq 2 ]; } && grep -q "ckpt_00000001.bin: model num_heads 0" err.txt; then
  pass "train --resume refuses the hostile checkpoint (exit $rc)"
else fail "train --resume on a hostile checkpoint: rc=$rc $(head -c 300 err.txt)"; fi

# ---- a shard truncated while training reads it: an error naming the file, never SIGBUS (exit 135) -----
mkdir -p td && cp data/*.bin data/tokenizer.json td/
timeout -k 5 120 "$MC" train --data td --steps 100000 --batch 2 --seq 32 --log-every 1 --val-every 0 \
  --ckpt-dir ck_trunc >trunc_out.txt 2>trunc_err.txt &
tpid=$!
if wait_for_line "step" trunc_out.txt; then
  truncate -s 2048 td/train_000000.bin
  wait $tpid
  rc=$?
  if [ $rc -ne 135 ] && [ $rc -ne 124 ] && [ $rc -ne 0 ] && grep -q "td/train_000000.bin: shard changed while training" trunc_err.txt; then
    pass "shard truncated mid-run -> exit $rc: $(grep -m1 'shard changed' trunc_err.txt)"
  else
    fail "shard truncated mid-run: rc=$rc (135 = SIGBUS, 124 = timeout): $(head -c 400 trunc_err.txt)"
  fi
else
  kill "$tpid" 2>/dev/null; wait "$tpid" 2>/dev/null
  fail "the run to truncate under never logged a step: $(head -c 300 trunc_err.txt)"
fi

# ---- eval without --data: the checkpoint's data directory ------------------------------------------
mutate gone.bin 'm["data_dir"] = "/nonexistent/data/dir"'
PATTERN="--data not given and the checkpoint's data directory '/nonexistent/data/dir' does not exist; pass --data" \
  expect_usage "eval without --data, data directory gone" eval --ckpt gone.bin
"$MC" eval --ckpt "$CK" --max-seqs 2 >out.txt 2>&1 && pass "eval without --data uses the checkpoint's directory" \
  || fail "eval without --data: $(head -c 300 out.txt)"
finish
