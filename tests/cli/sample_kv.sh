# sample with the KV cache prints the same text as --no-kv-cache, for the same seed: greedy, sampled, top-k,
# a prompt, and past the model's context (the tiny preset's 128 positions; the window then slides).
source "$(dirname "$0")/lib.bash"
make_data
"$MC" train --data data --steps 20 --batch 4 --seq 64 --val-every 0 --ckpt-dir ck >train.txt 2>&1 \
  || { fail "train: $(tail -3 train.txt)"; finish; }
CK=ck/ckpt_00000020.bin
n=0
for args in "--temperature 0" "--seed 1" "--seed 7 --top-k 5" "--seed 3 --temperature 0.7 --prompt line" \
            "--seed 2 --top-k 20 --prompt in"; do
  n=$((n + 1))
  # shellcheck disable=SC2086
  "$MC" sample --ckpt "$CK" --tokens 200 $args >cached.$n.txt 2>err.txt || { fail "sample $args: $(cat err.txt)"; continue; }
  # shellcheck disable=SC2086
  "$MC" sample --ckpt "$CK" --tokens 200 $args --no-kv-cache >plain.$n.txt 2>err.txt \
    || { fail "sample --no-kv-cache $args: $(cat err.txt)"; continue; }
  if [ "$(wc -c <cached.$n.txt)" -gt 150 ] && cmp -s cached.$n.txt plain.$n.txt; then
    pass "same 200 tokens with and without the cache ($args)"
  else
    fail "texts differ or are short ($args): $(head -c 80 cached.$n.txt | tr '\n' ' ') / $(head -c 80 plain.$n.txt | tr '\n' ' ')"
  fi
done
# Different seeds must give different texts, or the comparison above proves nothing.
cmp -s cached.2.txt cached.3.txt && fail "seeds 1 and 7 gave the same text" || pass "different seeds, different texts"
finish
