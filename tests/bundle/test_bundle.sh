#!/usr/bin/env bash
# The relocatable bundle, as a machine without our build dependencies would use it: scripts/package.sh
# builds it; it is unpacked into an empty directory and run with an empty environment (env -i).
# Checks: only glibc comes from outside the bundle, no CUDA/NCCL library is linked, the tiny model
# trains on the CPU from the bundle's own corpus text, --device cuda is a one-line usage error here,
# and the bundle's own test runner passes its CPU tests (unit, mpi, cli).
# Args: source dir, scratch dir. Takes a few minutes (a second, portable build).
set -uo pipefail
SRC=$1
WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
fails=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }

bash "$SRC/scripts/package.sh" "$WORK/dist" >"$WORK/package.log" 2>&1
tar=$(tail -n 1 "$WORK/package.log")
[ -f "$tar" ] || { echo "FAIL - package.sh wrote no bundle:"; tail -n 20 "$WORK/package.log"; exit 1; }
pass "package.sh: $(basename "$tar") ($(du -h "$tar" | cut -f1))"
mkdir "$WORK/unpacked" "$WORK/run"
tar -C "$WORK/unpacked" -xzf "$tar"
B=$(ls -d "$WORK"/unpacked/minicolossus-*)

# 1. Libraries: everything but glibc resolves inside the bundle; nothing of CUDA/NCCL is linked.
outside=""
for exe in "$B"/bin/minicolossus "$B"/bin/mc_*; do
  while read -r lib _ path _; do
    case "$lib" in libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libutil.so.*|*ld-linux*|linux-vdso*) continue ;; esac
    case "$path" in "$B"/*) ;; *) outside="$outside $(basename "$exe"):$lib=>$path" ;; esac
  done < <(env -i /usr/bin/ldd "$exe")
  if readelf -d "$exe" | grep -Eq 'NEEDED.*(libcuda|libcudart|libcublas|libnccl)'; then
    outside="$outside $(basename "$exe"):links-CUDA-libraries"
  fi
done
[ -z "$outside" ] && pass "only glibc from outside the bundle; no CUDA library linked" || fail "outside the bundle:$outside"

# 2. The tiny model trains with an empty environment (no HOME, no PATH) in an empty directory.
cd "$WORK/run" || exit 1
if env -i "$B/bin/minicolossus" train --steps 6 --log-every 3 --val-every 0 >train.txt 2>&1 &&
  [ -f checkpoints/ckpt_00000006.bin ]; then
  pass "env -i train: $(grep 'step     6' train.txt)"
else
  fail "env -i train: $(tail -n 3 train.txt)"
fi
# ... and without bible-kjv on PATH, it prepares the default corpus from the bundle's copy of the text.
rm -rf checkpoints
if env -i PATH=/nonexistent MC_CACHE_DIR="$WORK/cache" "$B/bin/minicolossus" train --steps 2 --val-every 0 \
  >train2.txt 2>&1 && [ -f "$WORK/cache/kjv/train_000000.bin" ]; then
  pass "default corpus from share/minicolossus/kjv.txt"
else
  fail "default corpus without bible: $(tail -n 3 train2.txt)"
fi

# 3. --device cuda without a GPU: exit 2, one line.
env -i "$B/bin/minicolossus" train --device cuda --steps 1 >out.txt 2>err.txt
rc=$?
if [ $rc -eq 2 ] && [ "$(wc -l <err.txt)" -eq 1 ] && grep -q -- "--device cuda" err.txt; then
  pass "--device cuda: exit 2: $(cat err.txt)"
else
  fail "--device cuda: rc $rc: $(head -c 300 err.txt)"
fi

# 4. The bundle's own tests, through its own runner and its own mpirun.
if env -i "$B/bin/run-tests" --out "$WORK/logs" --np 2 unit mpi cli >run-tests.txt 2>&1; then
  pass "$(tail -n 1 run-tests.txt)"
else
  fail "bin/run-tests: $(grep -E '^FAIL|^run-tests' run-tests.txt | tr '\n' ' ')"
fi

if [ "$fails" -eq 0 ]; then echo "all passed"; exit 0; fi
echo "$fails failed"
exit 1
