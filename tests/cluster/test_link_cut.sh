# A host whose link is cut mid-run (its cable pulled: the bridge port goes down, no RST, no error on any
# socket) ends the job: the ranks' watchdog (--watchdog-s) sees no progress and aborts, and mpirun, which
# cannot reach that host's daemon any more, gives up on it (oob_tcp_keepalive_*, Note [Cluster MCA
# settings] in scripts/cluster/mpirun.sh). Asserts: non-zero exit within the watchdog limit plus a margin,
# a watchdog line from a rank, and no rank left running on the host that kept its link.
source "$(dirname "$0")/lib.bash"
cluster_up 2
read -r h0 h1 <<<"$HOSTS"
make_data
WATCHDOG_S=3
MARGIN_S=20  # abort, mpirun giving up on the lost host (keepalive or tcp_retries2, ~3 s each), a loaded CI machine
cluster_mpirun -np 4 "$MC" train --data "$WORK/data" --steps 100000 --batch 2 --seq 32 --ckpt-dir "" --val-every 0 \
  --watchdog-s $WATCHDOG_S > run.txt 2>&1 &
pid=$!
wait_for_line '^step *20/' run.txt || { fail "no step 20 within 20 s: $(tail -3 run.txt)"; kill -KILL $pid; finish; }
start=$(date +%s.%N)
bash "$CLUSTER_SCRIPTS/netns.sh" link "$h1" down || { fail "could not cut $h1's link"; kill -KILL $pid; finish; }
if ! wait_gone $pid 120; then
  fail "job still running 120 s after $h1's link was cut"; kill -KILL $pid; finish
fi
wait $pid; rc=$?
took=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
line=$(grep -m1 "watchdog:" run.txt)
[ $rc -ne 0 ] && pass "job ended with exit $rc ${took}s after $h1's link was cut" || fail "exit code 0 after a link cut"
[ -n "$line" ] && pass "a rank reported it: $line" || fail "no watchdog line: $(tail -5 run.txt)"
# the limit the watchdog used (max(--watchdog-s, 10 x the slowest step)), from its own message
limit=$(sed -n 's/.*(limit \([0-9.]*\) s.*/\1/p' <<<"$line")
limit=${limit:-$WATCHDOG_S}
python3 -c "import sys; sys.exit(0 if $took <= $limit + $MARGIN_S else 1)" \
  && pass "ended within the watchdog limit ${limit}s + ${MARGIN_S}s" || fail "took ${took}s > limit ${limit}s + ${MARGIN_S}s"
# nothing of the job survives on the host that kept its link
for _ in $(seq 1 50); do [ -z "$(host_procs "$h0" minicolossus)" ] && break; sleep 0.1; done
left=$(host_procs "$h0" minicolossus | tr '\n' ' ')
[ -z "$left" ] && pass "no rank left on $h0" || fail "ranks still running on $h0: $left"
echo "  mpirun's last words: $(grep -v '^step' run.txt | tail -4 | tr '\n' '|' | cut -c1-400)"
finish
