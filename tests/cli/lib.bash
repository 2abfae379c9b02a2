# Shared by the tests/cli scripts (sourced, not a test itself: it has no .sh test of its own name).
set -uo pipefail
# Tests send SIGHUP and expect a graceful stop. A shell started with SIGHUP ignored (under nohup, by some CI
# runners) cannot undo that, and every process it starts inherits it: those runs would never stop. Start
# the script over once with SIGHUP's default action (GNU env --default-signal, coreutils 8.31 and later).
if [ -z "${MC_TEST_HUP_RESET:-}" ] && (( 0x$(awk '/^SigIgn/ {print $2}' /proc/$$/status 2>/dev/null || echo 0) & 1 )) &&
   env --default-signal=HUP true 2>/dev/null; then
  MC_TEST_HUP_RESET=1 exec env --default-signal=HUP bash "$0" "$@"
fi
MC="$1"
WORK="$2"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
export MC_CACHE_DIR="$WORK/cache"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
fails=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }
finish() { if [ "$fails" -eq 0 ]; then echo "all passed"; exit 0; else echo "$fails failed"; exit 1; fi; }
# A small text corpus prepared into $WORK/data.
make_data() {
  for i in $(seq 1 400); do echo "line $i: in the beginning was the word, and the word was with the trainer."; done > corpus.txt
  "$MC" prepare --input corpus.txt --out data >/dev/null || { echo "prepare failed"; exit 1; }
}
# expect_usage "description" args...: exit code 2 and exactly one line on stderr matching $PATTERN,
# within USAGE_TIMEOUT seconds (default 60: a hang fails instead of stalling the suite), and under an
# address-space limit of USAGE_VMEM_KB when set (a huge allocation fails instead of swapping).
expect_usage() { local what="$1"; shift; expect_exit2 "$what" "$MC" "$@"; }
# expect_exit2 "description" command args...: the same for any command (scripts too).
expect_exit2() {
  local what="$1"; shift
  ([ -z "${USAGE_VMEM_KB:-}" ] || ulimit -v "$USAGE_VMEM_KB"; timeout -k 5 "${USAGE_TIMEOUT:-60}" "$@") \
    >out.txt 2>err.txt </dev/null
  local rc=$? lines
  lines=$(wc -l <err.txt)
  if [ $rc -eq 2 ] && [ "$lines" -eq 1 ] && grep -q -- "$PATTERN" err.txt; then
    pass "$what -> exit 2: $(cat err.txt)"
  else
    fail "$what: rc=$rc (124 = timed out), $lines stderr lines (want 2, 1 line matching '$PATTERN'): $(head -c 400 err.txt)"
  fi
}
# wait_for_line PATTERN FILE [SECONDS]: up to SECONDS (default 20) for a line matching PATTERN in FILE.
wait_for_line() {
  for _ in $(seq 1 $((${3:-20} * 10))); do grep -q -- "$1" "$2" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
# wait_gone PID SECONDS: 0 if the process ended within SECONDS, else 1.
wait_gone() { for _ in $(seq 1 $(( $2 * 10 ))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
# A rank process of this test's run (matched by its binary and this test's data path), newest first.
rank_pid() { pgrep -f "^$MC train --data $WORK/data" | tail -1; }
kill_ranks() { pkill -KILL -f "^$MC train --data $WORK/data" 2>/dev/null; }
