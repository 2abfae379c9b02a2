# The binary reports the commit it was built from (cmake/git_rev.cmake runs at every build, not only at
# configure time), "-dirty" when tracked files had changes, and the same string in the training banner
# and in a checkpoint's metadata. Skipped outside a git checkout.
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
source "$(dirname "$0")/lib.bash"
head=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null) || { echo "skip - not a git checkout"; exit 77; }
v=$("$MC" --version)
case "$v" in
  "minicolossus $head" | "minicolossus $head-dirty") pass "--version: $v (HEAD $head)" ;;
  *) fail "--version says '$v', HEAD is $head" ;;
esac
make_data
"$MC" train --data data --steps 1 --batch 2 --seq 16 --ckpt-dir ck >train.txt 2>&1 || { fail "train"; finish; }
rev=${v#minicolossus }
grep -q "^minicolossus $rev |" train.txt && pass "training banner names $rev" || fail "banner: $(head -1 train.txt)"
"$MC" info --json ck/ckpt_00000001.bin | grep -q "\"git\": *\"$rev\"" && pass "checkpoint metadata git = $rev" \
  || fail "checkpoint metadata: $("$MC" info --json ck/ckpt_00000001.bin | grep -m1 git)"
finish
