#!/usr/bin/env bash
# mpirun across the hosts of a namespace test bed (netns.sh up): `mpirun.sh CLUSTER_DIR [mpirun args...]`
# runs Open MPI's mpirun on the first host, with CLUSTER_DIR/hostfile, rsh-agent.sh as the remote shell and
# the settings of Note [Cluster MCA settings]. Invariant: the caller's environment reaches mpirun (and so
# the ranks of the first host) unchanged; ranks on other hosts get only what `-x` forwards, as with ssh.
#
# Note [Cluster MCA settings]
# - --bind-to none. THE cause of "45 ms per all-reduce whatever the size" across namespaces: by default
#   Open MPI binds each node's ranks to cores counted from core 0 (--bind-to core for <= 2 ranks, socket
#   or numa above). Every "host" here is the same machine, so rank 0 of h0 and rank 0 of h1 are both
#   pinned to core 0 (see --report-bindings). Two busy-polling ranks on one core take turns only when
#   the scheduler tick preempts one (CONFIG_HZ=250: 4 ms), so every message of a collective waits for a
#   tick: 4 ms per exchange, a few exchanges per all-reduce, whatever the size. One namespace is fast
#   because one mpirun spreads its ranks over distinct cores; a raw TCP ping-pong is fast because it is
#   not pinned and sleeps in recv().
# - mpi_yield_when_idle=1 when the hostfile has more slots than this machine has CPUs: each host's
#   daemon sees all the cores as its own and never notices the oversubscription, so it would not turn
#   on yielding by itself; busy-polling ranks that outnumber the cores then also wait for ticks.
# - btl_tcp_if_include / oob_tcp_if_include = the test bed's subnet: the hosts' eth0 only (never lo, and
#   never an IPv6 address: netns.sh also disables IPv6 in the hosts, so there is no fe80:: link-local
#   address that Open MPI could pick; measured: it made no difference to the latency here).
# - btl self,vader,tcp: shared memory between the ranks of one host, TCP between hosts (the tcp BTL
#   already sets TCP_NODELAY: btl_tcp_use_nagle=0).
# - oob_tcp_keepalive_* short: mpirun notices a host whose link is gone within seconds instead of the
#   default 300 s + 9 x 20 s. Measured with a link cut mid-run: with them mpirun exits ~1 s after the
#   watchdog fires; without them mpirun reports "abort is already in progress" and waits for the lost
#   host's daemon for minutes (tests/cluster/test_link_cut.sh).
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: mpirun.sh CLUSTER_DIR [mpirun args...]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
shift
[ -f "$dir/hostfile" ] || { echo "mpirun.sh: $dir/hostfile: no such file (run netns.sh up first)" >&2; exit 2; }
first=$(awk 'NR == 1 {print $1}' "$dir/hostfile")
slots=$(awk '{for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) {sub("slots=", "", $i); s += $i}} END {print s + 0}' "$dir/hostfile")
yield=0
[ "$slots" -gt "$(nproc)" ] && yield=1
# MC_CLUSTER_BIND=core (Open MPI's default for 2 ranks) and MC_CLUSTER_YIELD=0 bring the slow case back
bind=${MC_CLUSTER_BIND:-none}
yield=${MC_CLUSTER_YIELD:-$yield}
exec bash "$here/netns.sh" exec "$first" mpirun --allow-run-as-root --hostfile "$dir/hostfile" \
  --mca plm_rsh_agent "$here/rsh-agent.sh" \
  --bind-to "$bind" --mca mpi_yield_when_idle "$yield" \
  --mca btl self,vader,tcp --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
  --mca oob_tcp_keepalive_time 1 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3 \
  "$@"
