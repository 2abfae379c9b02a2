# 2 hosts x 2 ranks (network + UTS namespaces, mpirun through scripts/cluster/rsh-agent.sh) train exactly
# like 1 rank accumulating 4 micro-batches; each host sees local ranks 0 and 1 and its own hostname.
source "$(dirname "$0")/lib.bash"
cluster_up 2
read -r h0 h1 <<<"$HOSTS"

# --- who runs where: every rank reached every other (sum of ranks), local ranks per host, hostnames
cluster_mpirun -np 4 "$PROBE" >probe.txt 2>probe.err
rc=$?
[ $rc -eq 0 ] && [ "$(grep -c '^probe ' probe.txt)" -eq 4 ] && pass "probe ran 4 ranks on $HOSTS" \
  || { fail "probe: rc=$rc, $(grep -c '^probe ' probe.txt) lines: $(head -c 600 probe.txt probe.err)"; finish; }
want_sum=6  # 0+1+2+3
bad=$(awk -v s=$want_sum '$1 == "probe" && ($5 != 4 || $13 != s)' probe.txt)
[ -z "$bad" ] && pass "all-reduce of the ranks across hosts gives $want_sum on every rank" || fail "wrong size or sum: $bad"
for h in $h0 $h1; do
  locals=$(awk -v h="$h" '$1 == "probe" && $11 == h {print $7 "/" $9}' probe.txt | sort | tr '\n' ' ')
  [ "$locals" = "0/2 1/2 " ] && pass "host $h: local ranks 0 and 1 of 2" || fail "host $h: local_rank/local_size = '$locals' (want '0/2 1/2 ')"
done
hosts_seen=$(awk '$1 == "probe" {print $3 ":" $11}' probe.txt | sort -n | tr '\n' ' ')
[ "$hosts_seen" = "0:$h0 1:$h0 2:$h1 3:$h1 " ] && pass "ranks 0,1 on $h0 and 2,3 on $h1 (distinct hostnames)" \
  || fail "rank:hostname = '$hosts_seen'"

# --- 2 x 2 ranks vs 1 rank x accum 4, same global batch (the tolerance of tests/mpi/test_dp.cpp)
make_data
common=(train --data "$WORK/data" --steps 6 --batch 2 --seq 32 --ckpt-dir "" --val-every 0 --bucket-mb 0.25)
"$MC" "${common[@]}" --grad-accum 4 --metrics "$WORK/one.jsonl" >one.txt 2>&1 || { fail "1-rank run: $(tail -3 one.txt)"; finish; }
cluster_mpirun -np 4 "$MC" "${common[@]}" --metrics "$WORK/four.jsonl" >four.txt 2>&1
rc=$?
[ $rc -eq 0 ] && pass "2 x 2 ranks trained (exit 0)" || { fail "2 x 2 run: exit $rc: $(tail -5 four.txt)"; finish; }
python3 - "$WORK/one.jsonl" "$WORK/four.jsonl" <<'PY' && pass "losses equal (max rel diff < 1e-4)" || fail "losses differ"
import json, sys
one = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
four = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
if len(one) != 6 or len(four) != 6:
    sys.exit(print(f"  want 6 steps each, got {len(one)} and {len(four)}"))
if any(m.get("ranks") != 4 for m in four):
    sys.exit(print("  the 4-rank metrics do not say ranks 4"))
d = max(abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(four, one))
print(f"  steps {[m['step'] for m in four]}; max rel loss diff {d:.3g}; losses {[round(m['loss'], 5) for m in four]}")
if one[-1]["loss"] >= one[0]["loss"]:
    sys.exit(print("  the loss did not go down"))
sys.exit(0 if d < 1e-4 else 1)
PY
finish
