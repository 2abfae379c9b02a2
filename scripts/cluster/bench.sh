#!/usr/bin/env bash
# All-reduce across 2 namespace "hosts" (netns.sh) under link shaping: for each link setting, runs
# `minicolossus bench-allreduce` through mpirun.sh and prints one table (a benchmark, not a test).
#   scripts/cluster/bench.sh [--bin PATH] [--ranks-per-host K] [--min-bytes B] [--max-bytes B] [--iters N]
#                            [--unshaped]   (--unshaped: only the "none" row)
# Shaping is applied to every host's eth0 egress, so a delay D adds 2D to a round trip between two hosts
# and a rate R caps each host's sending. Delays need the sch_netem qdisc; where the kernel lacks it, rates
# use tbf instead and the delay rows say "no netem". MC_CLUSTER_BIND=core MC_CLUSTER_YIELD=0 reproduce
# the slow placement of Note [Cluster MCA settings] (mpirun.sh). Needs root; the hosts are removed on exit.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/../../build/minicolossus"
k=1 min=1K max=4M iters=20 unshaped=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --ranks-per-host) k=$2; shift 2 ;;
    --min-bytes) min=$2; shift 2 ;;
    --max-bytes) max=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --unshaped) unshaped=1; shift ;;
    *) echo "bench.sh: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "bench.sh: --bin $bin: not an executable (build first, or pass --bin)" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
bash "$here/netns.sh" gc
dir=$(MC_CLUSTER_SLOTS=$k bash "$here/netns.sh" up 2 $$) || { echo "bench.sh: $dir" >&2; exit 1; }
trap 'bash "$here/netns.sh" down $$' EXIT
trap 'exit 143' TERM INT
hosts=$(awk '{print $1}' "$dir/hostfile")

netem=0
h=$(head -1 <<<"$hosts")
bash "$here/netns.sh" qdisc "$h" netem delay 0ms 2>/dev/null && netem=1
bash "$here/netns.sh" qdisc "$h" off

# label | qdisc arguments ("" = none; "netem ..." falls back to tbf for pure rates without netem)
settings=("none|" "delay 100us|netem delay 100us" "delay 1ms|netem delay 1ms"
          "rate 10gbit|netem rate 10gbit" "rate 1gbit|netem rate 1gbit" "1ms + 1gbit|netem delay 1ms rate 1gbit")
[ $unshaped = 1 ] && settings=("none|")
tbf_of() {  # "netem rate R" -> tbf with a burst of 1 ms at R, and at least one 64 KiB GSO packet
  local r=$1 bytes
  bytes=$(python3 -c "import re; m=re.match(r'(\d+)([kmg]?)bit', '$r'); v=int(m[1])*{'':1,'k':1e3,'m':1e6,'g':1e9}[m[2]]; print(max(65536, int(v/8/1000)))")
  echo "tbf rate $r burst $bytes latency 50ms"
}

echo "# 2 hosts x $k ranks, bench-allreduce float sum, iters $iters; shaping: each host's eth0 egress" \
     "($([ $netem = 1 ] && echo netem || echo "no netem in this kernel: rates via tbf")); bind ${MC_CLUSTER_BIND:-none}"
printf "%-14s %10s %12s %12s %8s\n" "link" "size(B)" "time(us)" "busbw(GB/s)" "#wrong"
for s in "${settings[@]}"; do
  label=${s%%|*} q=${s#*|}
  if [ -n "$q" ] && [ $netem = 0 ]; then
    if [[ "$q" =~ ^netem\ rate\ ([0-9]+[kmg]?bit)$ ]]; then q=$(tbf_of "${BASH_REMATCH[1]}")
    else printf "%-14s %10s\n" "$label" "(no netem)"; continue; fi
  fi
  for h in $hosts; do
    # shellcheck disable=SC2086  # qdisc arguments are words; "off" removes the shaping
    bash "$here/netns.sh" qdisc "$h" ${q:-off} || { echo "bench.sh: tc qdisc ${q:-off} failed on $h" >&2; exit 1; }
  done
  out=$(bash "$here/mpirun.sh" "$dir" -np $((2 * k)) -x OMP_NUM_THREADS "$bin" bench-allreduce \
        --min-bytes "$min" --max-bytes "$max" --factor 4 --iters "$iters" --warmup 3 2>&1) ||
    { echo "bench.sh: bench-allreduce failed under '$label': $(tail -3 <<<"$out")" >&2; exit 1; }
  awk -v l="$label" '$1 ~ /^[0-9]+$/ {printf "%-14s %10s %12s %12s %8s\n", l, $1, $4, $6, $7}' <<<"$out"
done
