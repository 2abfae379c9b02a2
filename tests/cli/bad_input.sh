# Every bad flag or input file: exit code 2 and one line naming the flag or file. Never a crash.
source "$(dirname "$0")/lib.bash"
make_data
T=(train --data data --ckpt-dir ck)
PATTERN=--batch expect_usage "zero batch" "${T[@]}" --batch 0
PATTERN=--batch expect_usage "negative batch" "${T[@]}" --batch -3
PATTERN=--batch expect_usage "non-numeric batch" "${T[@]}" --batch abc
PATTERN=--seq expect_usage "sequence longer than the context" "${T[@]}" --seq 4096
PATTERN=--steps expect_usage "zero steps" "${T[@]}" --steps 0
PATTERN=--grad-accum expect_usage "zero accumulation" "${T[@]}" --grad-accum 0
PATTERN=--lr expect_usage "negative lr" "${T[@]}" --lr -1
PATTERN=--model expect_usage "unknown preset" "${T[@]}" --model d13
PATTERN=--zero expect_usage "bad zero stage" "${T[@]}" --zero 3
PATTERN=--device expect_usage "unknown device" "${T[@]}" --device tpu
PATTERN=--comm expect_usage "unknown comm" "${T[@]}" --comm carrier-pigeon
PATTERN=--data expect_usage "missing data dir" train --data /nonexistent/dir
PATTERN=nonexistent expect_usage "missing init file" "${T[@]}" --init-from /nonexistent/model.bin
PATTERN=foo expect_usage "unknown flag" "${T[@]}" --foo 1
PATTERN=--input expect_usage "missing prepare input" prepare --input /nonexistent.txt --out x
: > empty.txt
PATTERN=empty expect_usage "empty prepare input" prepare --input empty.txt --out x
PATTERN=missing.bin expect_usage "missing checkpoint (eval)" eval --ckpt missing.bin --data data
PATTERN=missing.bin expect_usage "missing checkpoint (sample)" sample --ckpt missing.bin
PATTERN=unknown expect_usage "unknown command" frobnicate

# Bad shards: each refused before training, naming the file.
mkdir -p bad && cp data/val_*.bin bad/ && cp data/tokenizer.json bad/
printf 'garbage that is not a shard' > bad/train_000000.bin
PATTERN=train_000000.bin expect_usage "shard with bad header" train --data bad --steps 1
python3 - <<'PY'
import struct
hdr = [0]*256; hdr[0]=20240520; hdr[1]=1; hdr[2]=1000
open("bad/train_000000.bin","wb").write(struct.pack("<256i",*hdr) + struct.pack("<500H",*([1]*500)))
PY
PATTERN=train_000000.bin expect_usage "truncated shard" train --data bad --steps 1
python3 - <<'PY'
import struct
hdr = [0]*256; hdr[0]=20240520; hdr[1]=1; hdr[2]=1000
open("bad/train_000000.bin","wb").write(struct.pack("<256i",*hdr) + struct.pack("<1000H",*([300]*1000)))
PY
PATTERN="out of range" expect_usage "token out of range" train --data bad --steps 1

# A corrupt checkpoint is refused by eval.
"$MC" train --data data --steps 1 --batch 2 --seq 32 --ckpt-dir ck >/dev/null 2>&1 || fail "tiny train failed"
cp ck/ckpt_00000001.bin broken.bin && printf 'XXXX' | dd of=broken.bin bs=1 seek=3000 conv=notrunc 2>/dev/null
PATTERN=broken.bin expect_usage "corrupt checkpoint" eval --ckpt broken.bin --data data

# No GPU here (or no CUDA build): a clear message, not a crash. Skip the check where a GPU exists.
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  PATTERN="--device cuda" expect_usage "cuda without a GPU" "${T[@]}" --device cuda
fi
"$MC" --help | grep -q "bench-allreduce" && pass "--help lists the commands" || fail "--help"
"$MC" train --help | grep -q -- "--grad-accum" && pass "train --help lists its flags" || fail "train --help"
# bench-allreduce sizes: plain decimal with K/M/G, bounded (1000G ended in std::bad_alloc, exit 1;
# 0x10 was taken as 16), and its other numbers follow every command's rule.
PATTERN="--min-bytes 0x10: not a size" expect_usage "bench-allreduce hex size" bench-allreduce --min-bytes 0x10
PATTERN="--max-bytes 1000G: at most 16G" expect_usage "bench-allreduce huge size" bench-allreduce --max-bytes 1000G
PATTERN="--iters 1x: not a whole number" expect_usage "bench-allreduce --iters 1x" bench-allreduce --iters 1x
"$MC" bench-allreduce --min-bytes 1k --max-bytes 4K --iters 2 --warmup 0 >out.txt 2>err.txt &&
  [ "$(grep -c '^ *[0-9]' out.txt)" -eq 3 ] && pass "bench-allreduce 1k..4K: 3 rows" || fail "bench-allreduce sizes: $(cat out.txt err.txt)"
finish
