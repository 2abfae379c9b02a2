#!/usr/bin/env bash
# Set up, build and run the whole test suite (ctest labels: unit, mpi, gpu, bundle, fuzz, cluster; gpu tests skip without
# a GPU). Extra arguments go to ctest, e.g. scripts/test.sh -L unit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)" "$@"
