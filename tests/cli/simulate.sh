#!/usr/bin/env bash
# `minicolossus simulate` from the command line: the issue's example table, --json for scripts, a
# hardware JSON override, and bad input of every kind ending with exit 2 and one line.
source "$(dirname "$0")/lib.bash"

GPUS=1,8,64,512,4096,32768,100000,200000
if "$MC" simulate --model d12 --seq 1024 --batch 16 --hardware h100 --gpus $GPUS >table.txt 2>err.txt; then
  rows=$(grep -cE '^ +[0-9]+ +[0-9]+ ' table.txt)
  if [ "$rows" -eq 8 ] && [ ! -s err.txt ]; then pass "table: 8 rows"; else fail "table: $rows rows: $(cat table.txt err.txt)"; fi
else
  fail "simulate d12 on h100: rc=$?: $(cat err.txt)"
fi
cat table.txt

if "$MC" simulate --model d12 --hardware h200 --gpus 1,8,100000 --json >sim.json 2>err.txt; then
  if python3 - sim.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rows = d["rows"]
assert [r["gpus"] for r in rows] == [1, 8, 100000], rows
for k in ("step_ms", "exposed_comm_ms", "scaling_efficiency", "tokens_per_s", "tokens_per_s_per_gpu", "mfu",
          "mem_gib_per_gpu", "ckpt_interval_min", "goodput", "time_to_tokens_h"):
    assert all(isinstance(r[k], (int, float)) for r in rows), k
assert rows[0]["exposed_comm_ms"] == 0 and abs(rows[0]["scaling_efficiency"] - 1) < 1e-12
assert rows[2]["goodput"] < rows[1]["goodput"] < 1, "goodput falls as the job grows"
assert rows[2]["tokens_per_s"] > rows[1]["tokens_per_s"] > rows[0]["tokens_per_s"]
assert d["hardware"]["name"] == "h200" and d["config"]["critical_batch_tokens"] > 0
PY
  then pass "--json"; else fail "--json: $(head -c 600 sim.json)"; fi
else
  fail "simulate --json: $(cat err.txt)"
fi

# A hardware file overriding one field of a built-in profile changes the prediction.
echo '{"base": "h100", "inter_bw_gbs": 5}' >slow.json
a=$("$MC" simulate --gpus 64 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows"][0]["comm_ms"])')
b=$("$MC" simulate --gpus 64 --hardware slow.json --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows"][0]["comm_ms"])')
if python3 -c "import sys; sys.exit(0 if float('$b') > 2 * float('$a') else 1)"; then
  pass "a 10x slower NIC from a JSON file: comm $a -> $b ms"
else
  fail "JSON override: comm $a -> $b ms"
fi

PATTERN='--hardware'; expect_usage "unknown hardware" simulate --hardware tpu9
PATTERN='--gpus'; expect_usage "zero GPUs" simulate --gpus 0
PATTERN='--gpus'; expect_usage "negative GPUs" simulate --gpus 8,-3
PATTERN='--gpus'; expect_usage "empty item" simulate --gpus 1,,8
PATTERN='--gpus'; expect_usage "not a number" simulate --gpus 8x
PATTERN='--gpus'; expect_usage "trailing comma" simulate --gpus 8,
PATTERN='--batch'; expect_usage "batch 0" simulate --batch 0
PATTERN='--seq'; expect_usage "seq beyond context" simulate --seq 4096
PATTERN='--grad-accum'; expect_usage "grad-accum 0" simulate --grad-accum 0
PATTERN='--zero'; expect_usage "zero 4" simulate --zero 4
PATTERN='--bucket-mb'; expect_usage "bucket nan" simulate --bucket-mb nan
PATTERN='--bucket-mb'; expect_usage "bucket of a few bytes (millions of buckets)" simulate --bucket-mb 1e-9
PATTERN='--model'; expect_usage "unknown model" simulate --model d7
PATTERN='--algo'; expect_usage "unknown algo" simulate --algo butterfly
PATTERN='--grad-dtype'; expect_usage "grad dtype" simulate --grad-dtype fp8
PATTERN='--tokens'; expect_usage "tokens 0" simulate --tokens 0
PATTERN='--failures-per-gpu-hour'; expect_usage "negative failure rate" simulate --failures-per-gpu-hour -1
PATTERN='does not fit'; expect_usage "does not fit" simulate --model d48 --batch 512 --hardware h100 --gpus 1,8
PATTERN='not expected'; expect_usage "unknown flag" simulate --gpu 8
echo '{"base": "h100", "peak_tflops": -5}' >neg.json
PATTERN='neg.json'; expect_usage "negative peak in a hardware file" simulate --hardware neg.json
echo '{"base": "h100", "warp_drive": 1}' >unk.json
PATTERN='unk.json'; expect_usage "unknown field in a hardware file" simulate --hardware unk.json
echo '{"base": ' >trunc.json
PATTERN='trunc.json'; expect_usage "truncated hardware file" simulate --hardware trunc.json
mkdir -p adir
PATTERN='adir'; expect_usage "a directory as hardware" simulate --hardware adir
PATTERN='missing.jsonl'; expect_usage "missing metrics file" simulate --calibrate missing.jsonl
echo '{"step": 1, "loss": 2.5}' >old.jsonl
PATTERN='old.jsonl'; expect_usage "metrics without phases" simulate --calibrate old.jsonl
printf 'size count\n1 2\n' >bench.txt
PATTERN='bench.txt'; expect_usage "not a bench-allreduce table" simulate --calibrate-comm bench.txt
cat >one.txt <<'T'
# minicolossus bench-allreduce: backend mpi, 1 rank, dtype float, op sum, device cpu, iters 20, warmup 5
     size(B)        count     type     time(us)  algbw(GB/s)  busbw(GB/s)   #wrong
           8            2    float         1.00        0.008        0.000        0
        1024          256    float         2.00        0.512        0.000        0
T
PATTERN='--calibrate-comm one.txt: .*1 rank'; expect_usage "a 1-rank bench table" simulate --calibrate-comm one.txt
mkfifo fifo
PATTERN='fifo'; USAGE_TIMEOUT=10 expect_usage "a FIFO as calibration" simulate --calibrate fifo
finish
