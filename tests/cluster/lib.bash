# Shared by the tests/cluster scripts (sourced; not a test): tests/cli/lib.bash (pass/fail/finish, make_data,
# wait_for_line, wait_gone) plus a namespace cluster owned by this test process. Args: minicolossus binary,
# scratch dir, mc_cluster_probe binary. Invariant: the cluster is removed when the script exits, however it
# exits (the EXIT trap), and leftovers of crashed earlier runs are removed first (netns.sh gc).
PROBE=${3:-}
CLUSTER_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../scripts/cluster" && pwd)"
source "$(dirname "${BASH_SOURCE[0]}")/../cli/lib.bash"
command -v mpirun >/dev/null || { echo "skipped: no mpirun on PATH"; exit 77; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1  # several ranks share this machine's cores

# cluster_up N: N hosts with 2 slots each; sets CLUSTER (state dir) and HOSTS (host names, in order).
cluster_up() {
  bash "$CLUSTER_SCRIPTS/netns.sh" gc
  local out rc
  out=$(bash "$CLUSTER_SCRIPTS/netns.sh" up "$1" $$)
  rc=$?
  if [ $rc -eq 77 ]; then echo "$out"; exit 77; fi
  [ $rc -eq 0 ] || { echo "FAIL - netns.sh up: $out"; exit 1; }
  trap 'bash "$CLUSTER_SCRIPTS/netns.sh" down $$' EXIT
  trap 'exit 143' TERM INT  # so that the EXIT trap runs on a signal too
  CLUSTER=$out
  HOSTS=$(awk '{print $1}' "$CLUSTER/hostfile" | tr '\n' ' ')
}

# cluster_mpirun ARGS...: mpirun across the cluster's hosts (scripts/cluster/mpirun.sh).
cluster_mpirun() { bash "$CLUSTER_SCRIPTS/mpirun.sh" "$CLUSTER" -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x MC_CACHE_DIR "$@"; }

# host_procs HOST NAME: pids of processes named NAME inside HOST's network namespace.
host_procs() {
  local p
  for p in $(ip netns pids "$1" 2>/dev/null); do
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "$2" ] && echo "$p"
  done
}
