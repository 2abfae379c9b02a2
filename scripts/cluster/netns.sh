#!/usr/bin/env bash
# A test bed of N "hosts" on one machine: each host is a network namespace plus a UTS namespace (its own
# hostname), joined by veth pairs to a bridge that lives in a namespace of its own, so no address, link or
# bridge is ever added to the namespace the script is called from. Invariant: every object is named after
# the owning process id (mc<PID>-...), so parallel runs never collide and `down`/`gc` remove exactly one run.
#
#   netns.sh up N [OWNER_PID]    make hosts mc<PID>-h0 .. h<N-1>; prints the state directory
#   netns.sh down [OWNER_PID]    remove that run (idempotent)
#   netns.sh gc                  remove the leftovers of runs whose owner process is gone
#   netns.sh exec HOST CMD...    run CMD (argv as given, environment and cwd kept) on HOST
#   netns.sh link HOST up|down   plug or cut HOST's cable (its port on the bridge)
#   netns.sh qdisc HOST QDISC ARGS...  `tc qdisc replace dev eth0 root QDISC ARGS` in HOST: shapes what
#                                HOST sends, e.g. `netem delay 1ms rate 1gbit` or `tbf ...`; "off" removes it
# OWNER_PID defaults to the caller's pid ($PPID). State (holder pids, hostfile) is kept under
# $MC_CLUSTER_RUN (default /run/mc-cluster)/mc<PID>/. Exit 77 with one line when namespaces cannot be made
# here (not root, no ip/unshare/nsenter, no netns or veth support): callers turn that into a skipped test.
#
# Note [Holder process]
# `ip netns exec` enters a network namespace but not a UTS namespace, and a UTS namespace lives only as long
# as some process is in it. Each host therefore has one long-lived holder (`sleep`) that was started in the
# host's network namespace and in a new UTS namespace whose hostname is the host's name; everything that
# runs "on" the host (mpirun, orted via rsh-agent.sh) enters both namespaces of that holder with nsenter.
# nsenter does not enter the holder's mount namespace, so the caller's view of files (cwd, /tmp, the
# build tree) is unchanged, as on hosts that share a file system.
#
# Addresses: 10.77.0.<i+1>/24 on each host's eth0. The same addresses in every run are fine: each run has
# its own bridge in its own namespace, so runs cannot see each other. IPv6 is switched off inside the
# hosts (see Note [Cluster MCA settings] in mpirun.sh).
set -uo pipefail
export PATH="/usr/sbin:/sbin:$PATH"
RUN_ROOT=${MC_CLUSTER_RUN:-/run/mc-cluster}

skip() { echo "skipped: $*"; exit 77; }
die() { echo "netns.sh: $*" >&2; exit 1; }

tag_of() { echo "mc$1"; }
host_ns() { echo "$(tag_of "$1")-h$2"; }

# Removes run <pid>: holders, host namespaces, the switch namespace and the state directory.
teardown() {
  local pid=$1 tag ns p
  tag=$(tag_of "$pid")
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$tag-(h[0-9]+|sw)\$"); do
    # the holders, and any process still inside (a rank that outlived its job): they keep it alive
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "${RUN_ROOT:?}/$tag"
}

# is_holder PID HOST: PID is alive and in HOST's network namespace (not some process that reused the pid)
is_holder() {
  [ -n "$1" ] && [ "$(stat -L -c %d:%i "/proc/$1/ns/net" 2>/dev/null)" = "$(stat -L -c %d:%i "/run/netns/$2" 2>/dev/null)" ]
}

holder_of() {  # HOST -> pid of its holder (checked alive)
  local host=$1 tag=${1%-h*} pidf hp
  pidf="$RUN_ROOT/$tag/${host#"$tag"-}.pid"
  [ -f "$pidf" ] || die "unknown host '$host' (no $pidf; is its cluster up?)"
  hp=$(cat "$pidf")
  is_holder "$hp" "$host" || die "host '$host': its holder process $hp is gone"
  echo "$hp"
}

cmd_up() {
  local n=${1:?usage: netns.sh up N [OWNER_PID]} pid=${2:-$PPID}
  [ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
  for t in ip unshare nsenter; do command -v "$t" >/dev/null || skip "no $t on PATH"; done
  local tag sw i ns
  tag=$(tag_of "$pid")
  sw="$tag-sw"
  teardown "$pid"  # a dead run that had our pid
  mkdir -p "$RUN_ROOT/$tag" || skip "cannot create $RUN_ROOT/$tag"
  local start
  start=$(start_time "$pid")
  [ -n "$start" ] || die "owner process $pid does not exist"
  echo "$pid $start" >"$RUN_ROOT/$tag/owner"
  # Note [Reaper]: removes this run once its owner (and this `up`) are gone, whatever killed them
  setsid bash "$0" reap "$pid" "$start" $$ </dev/null >/dev/null 2>&1 &
  ip netns add "$sw" 2>/dev/null || { teardown "$pid"; skip "cannot create a network namespace (ip netns add failed)"; }
  ip -n "$sw" link add "br$pid" type bridge 2>/dev/null || { teardown "$pid"; skip "cannot create a bridge in a namespace"; }
  ip -n "$sw" link set "br$pid" up
  : >"$RUN_ROOT/$tag/hostfile"
  for ((i = 0; i < n; i++)); do
    ns=$(host_ns "$pid" "$i")
    ip netns add "$ns" || { teardown "$pid"; skip "cannot create a network namespace ($ns)"; }
    # the veth pair is created directly in the two namespaces: its names never exist where we are
    ip link add "v${pid}h$i" netns "$ns" type veth peer name "s${pid}h$i" netns "$sw" 2>/dev/null ||
      { teardown "$pid"; skip "cannot create a veth pair between namespaces"; }
    ip -n "$sw" link set "s${pid}h$i" master "br$pid" up
    # no IPv6 in the hosts: no link-local fe80:: address for Open MPI to try (Note [Cluster MCA settings]);
    # MC_CLUSTER_IPV6=1 keeps it, to measure its effect
    [ "${MC_CLUSTER_IPV6:-0}" = 1 ] || ip netns exec "$ns" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6' 2>/dev/null
    # Note [Unacknowledged data to a lost host]: TCP keepalive (mpirun.sh) only probes an idle connection;
    # when mpirun has unacknowledged data queued for a host whose cable is cut, Linux retransmits for
    # tcp_retries2=15 rounds (about 15 minutes) before the connection fails, and mpirun waits that long
    # to tear the job down even though every reachable rank has already aborted. 3 rounds give up after
    # about 3 s. Per network namespace, so only the test hosts are changed. On a real cluster the same
    # sysctl on the node running mpirun bounds the wait for a dead node.
    ip netns exec "$ns" sh -c 'echo 3 >/proc/sys/net/ipv4/tcp_retries2' 2>/dev/null
    ip -n "$ns" link set "v${pid}h$i" name eth0
    ip -n "$ns" addr add "10.77.0.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    # Note [Holder process]: setsid + closed fds, so it never holds the caller's pipes open
    setsid nsenter --net="/run/netns/$ns" unshare --uts sh -c "hostname '$ns' && exec sleep infinity" \
      </dev/null >/dev/null 2>&1 &
    echo $! >"$RUN_ROOT/$tag/h$i.pid"
    echo "$ns slots=${MC_CLUSTER_SLOTS:-2}" >>"$RUN_ROOT/$tag/hostfile"
  done
  for ((i = 0; i < n; i++)); do  # wait until each holder is a sleep with its hostname set
    ns=$(host_ns "$pid" "$i")
    local ok=0
    for _ in $(seq 1 100); do
      local hp; hp=$(cat "$RUN_ROOT/$tag/h$i.pid")
      if is_holder "$hp" "$ns" && [ "$(nsenter -t "$hp" -u hostname 2>/dev/null)" = "$ns" ]; then
        ok=1; break
      fi
      sleep 0.05
    done
    [ $ok -eq 1 ] || { teardown "$pid"; skip "cannot start a process in a new UTS namespace (unshare --uts)"; }
  done
  # the hosts must reach each other (a bridge that forwards nothing would look like a hang later)
  if [ "$n" -gt 1 ]; then
    local ok=0
    for _ in $(seq 1 50); do
      ip netns exec "$(host_ns "$pid" 0)" ping -c1 -W1 10.77.0.2 >/dev/null 2>&1 && { ok=1; break; }
      command -v ping >/dev/null || { ok=1; break; }  # no ping here: trust the links
      sleep 0.1
    done
    [ $ok -eq 1 ] || { teardown "$pid"; skip "hosts of a bridge in a namespace cannot reach each other"; }
  fi
  echo "$RUN_ROOT/$tag"
}

# start_time PID: the process's start time in clock ticks since boot (empty if there is no such process);
# with the pid it names one process for good, even after the pid is reused.
start_time() { sed -n 's/.*) [A-Za-z] \([-0-9]* \)\{18\}\([0-9]*\) .*/\2/p' /proc/"$1"/stat 2>/dev/null; }

# owner_alive PID: the process that made run <PID> is still running (pid and start time match).
owner_alive() {
  local f="$RUN_ROOT/mc$1/owner" p s
  [ -f "$f" ] || { kill -0 "$1" 2>/dev/null; return; }  # half-made run: all we know is the pid
  read -r p s <"$f"
  [ -n "$s" ] && [ "$(start_time "$1")" = "$s" ]
}

cmd_gc() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^mc[0-9]+-sw$'); do
    pid=${ns#mc}; pid=${pid%-sw}
    owner_alive "$pid" || teardown "$pid"
  done
  for d in "$RUN_ROOT"/mc*; do
    [ -d "$d" ] || continue
    pid=${d##*/mc}
    owner_alive "$pid" || teardown "$pid"
  done
}

# Note [Reaper]
# A trap in the caller removes its hosts on a normal exit or a trapped signal, but not after SIGKILL (a
# ctest timeout) or a signal that lands before the trap is set. So `up` also starts a detached reaper that
# polls the owner (pid + start time) and the `up` process itself, and tears the run down once both are
# gone; it stops early when the run was already removed or another process now owns the name.
cmd_reap() {
  local pid=$1 start=$2 up=$3 f="$RUN_ROOT/mc$1/owner"
  while :; do
    [ -f "$f" ] || exit 0
    [ "$(awk '{print $2}' "$f")" = "$start" ] || exit 0
    if [ "$(start_time "$pid")" != "$start" ] && ! kill -0 "$up" 2>/dev/null; then break; fi
    sleep 0.5
  done
  teardown "$pid"
}

port_of() {  # HOST -> "<switch ns> <its port on the bridge>"
  local host=$1 tag=${1%-h*} i=${1##*-h}
  echo "$tag-sw s${tag#mc}h$i"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) teardown "${2:-$PPID}" ;;
  gc) cmd_gc ;;
  reap) shift; cmd_reap "$@" ;;
  exec)
    [ $# -ge 3 ] || die "usage: netns.sh exec HOST CMD..."
    hp=$(holder_of "$2") || exit 1
    shift 2
    exec nsenter -t "$hp" -n -u -- "$@"
    ;;
  link)
    [ $# -eq 3 ] || die "usage: netns.sh link HOST up|down"
    holder_of "$2" >/dev/null || exit 1
    read -r sw port < <(port_of "$2")
    ip -n "$sw" link set "$port" "$3"
    ;;
  qdisc)
    [ $# -ge 3 ] || die "usage: netns.sh qdisc HOST QDISC ARGS...|off"
    holder_of "$2" >/dev/null || exit 1
    host=$2; shift 2
    # the host's eth0, egress: what the host sends (shape every host for both directions of a pair)
    if [ "$1" = off ]; then ip netns exec "$host" tc qdisc del dev eth0 root 2>/dev/null; exit 0; fi
    ip netns exec "$host" tc qdisc replace dev eth0 root "$@"
    ;;
  *) die "usage: netns.sh up N [PID] | down [PID] | gc | exec HOST CMD... | link HOST up|down | qdisc HOST QDISC ARGS|off" ;;
esac
