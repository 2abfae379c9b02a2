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
# The "-dirty" suffix: the binary may predate later edits of the tree, so it is checked on cmake/git_rev.cmake
# itself, in a throwaway repository: clean, a tracked file changed, an untracked file only, no git.
if command -v cmake >/dev/null && [ -f "$SRC/cmake/git_rev.cmake" ]; then  # (not in the bundle)
  # (No git above the scratch directory either: it may lie inside this checkout.)
  rev_of() {
    GIT_CEILING_DIRECTORIES="$WORK" cmake -D SRC="$1" -D OUT="$PWD/rev.h" -P "$SRC/cmake/git_rev.cmake" &&
      sed -n 's/.*MC_GIT_REV "\(.*\)"/\1/p' rev.h
  }
  mkdir repo && git -C repo init -q && echo a >repo/f && git -C repo add f &&
    git -C repo -c user.name=t -c user.email=t@t commit -qm one || fail "could not make a git repository"
  r=$(git -C repo rev-parse --short HEAD)
  [ "$(rev_of repo)" = "$r" ] && pass "git_rev.cmake: a clean tree is $r" || fail "clean tree: '$(rev_of repo)', want $r"
  echo b >repo/new
  [ "$(rev_of repo)" = "$r" ] && pass "git_rev.cmake: an untracked file is not dirty" || fail "untracked: '$(rev_of repo)'"
  echo b >repo/f
  [ "$(rev_of repo)" = "$r-dirty" ] && pass "git_rev.cmake: a changed tracked file is $r-dirty" \
    || fail "changed tracked file: '$(rev_of repo)', want $r-dirty"
  mkdir nogit
  [ "$(rev_of nogit)" = unknown ] && pass "git_rev.cmake: no git is 'unknown'" || fail "no git: '$(rev_of nogit)'"
fi
make_data
"$MC" train --data data --steps 1 --batch 2 --seq 16 --ckpt-dir ck >train.txt 2>&1 || { fail "train"; finish; }
rev=${v#minicolossus }
grep -q "^minicolossus $rev |" train.txt && pass "training banner names $rev" || fail "banner: $(head -1 train.txt)"
"$MC" info --json ck/ckpt_00000001.bin | grep -q "\"git\": *\"$rev\"" && pass "checkpoint metadata git = $rev" \
  || fail "checkpoint metadata: $("$MC" info --json ck/ckpt_00000001.bin | grep -m1 git)"
finish
