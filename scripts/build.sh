#!/usr/bin/env bash
# Configures and builds minicolossus into ${BUILD_DIR:-build} (Release). Extra args go to cmake,
# e.g. scripts/build.sh -DMC_CUDA=OFF. CUDA, MPI and NCCL are used when found (AUTO).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
# The CUDA toolkit may be installed without being on PATH (e.g. /usr/local/cuda): let CMake find it.
if ! command -v nvcc >/dev/null && [ -z "${CUDACXX:-}" ]; then
  for d in "${CUDA_HOME:-}" /usr/local/cuda; do
    if [ -n "$d" ] && [ -x "$d/bin/nvcc" ]; then export CUDACXX="$d/bin/nvcc"; break; fi
  done
fi
configure() {  # quiet unless it fails; prints which backends were found
  local log; log=$(mktemp)
  if ! cmake -S . -B "$BUILD_DIR" "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; exit 1; fi
  grep "minicolossus:" "$log" || true
  rm -f "$log"
}
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  configure "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
elif [ $# -gt 0 ]; then
  configure "$@"
fi
cmake --build "$BUILD_DIR" -j "$(nproc)"
