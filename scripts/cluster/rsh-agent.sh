#!/usr/bin/env bash
# Open MPI's remote shell for the namespace test bed (plm_rsh_agent): called as `rsh-agent.sh HOST CMD...`
# like ssh, it runs CMD through `sh -c` on HOST, i.e. inside the network and UTS namespaces of HOST's
# holder (Note [Holder process] in netns.sh). Invariant: like ssh, the remote command starts from a clean
# environment (PATH, HOME, LANG only): what the job needs travels on orted's command line or via -x.
set -uo pipefail
export PATH="/usr/sbin:/sbin:$PATH"
# ssh-style options before the host (Open MPI adds none for a custom agent, but be tolerant)
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
[ $# -ge 2 ] || { echo "rsh-agent.sh: usage: rsh-agent.sh HOST CMD..." >&2; exit 255; }
host=$1
shift
run=${MC_CLUSTER_RUN:-/run/mc-cluster}
tag=${host%-h*}
pidf="$run/$tag/${host#"$tag"-}.pid"
hp=$(cat "$pidf" 2>/dev/null) || { echo "rsh-agent.sh: unknown host '$host' (no $pidf)" >&2; exit 255; }
# the holder must still be in HOST's network namespace (a reused pid would run CMD in the wrong place)
[ "$(stat -L -c %d:%i "/proc/$hp/ns/net" 2>/dev/null)" = "$(stat -L -c %d:%i "/run/netns/$host" 2>/dev/null)" ] ||
  { echo "rsh-agent.sh: host '$host' is down (holder $hp gone)" >&2; exit 255; }
# ssh joins its arguments with spaces and hands them to the remote shell: so do we
exec nsenter -t "$hp" -n -u -- env -i PATH="$PATH" HOME="${HOME:-/root}" LANG="${LANG:-C}" \
  MC_CLUSTER_RUN="$run" sh -c "$*"
