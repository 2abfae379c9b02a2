#!/usr/bin/env bash
# Set up, build and train. With no arguments: a tiny GPT-2 on the built-in corpus (King James Bible).
# Arguments go to `minicolossus train`; set NP=4 to train data-parallel on 4 ranks with mpirun.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
if [ "${NP:-1}" -gt 1 ]; then
  root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
  exec mpirun "${root[@]}" --oversubscribe -np "$NP" -x OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} \
    build/minicolossus train "$@"
fi
exec build/minicolossus train "$@"
