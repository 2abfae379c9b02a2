#!/usr/bin/env bash
# Installs every system dependency minicolossus needs, with apt-get, only when something is missing, and
# fetches the GPT-2 BPE ranks (gpt2.tiktoken) into the cache when they are not there.
# Idempotent and non-interactive; silent when all is there. Needs root (or sudo) the first time, and the
# network the first time (PyPI for the ranks).
# Extra Debian packages a script needs for itself may be named as arguments (package.sh: patchelf).
set -euo pipefail
fail() { echo "setup.sh: $*" >&2; exit 1; }
PKGS=(build-essential cmake ninja-build pkg-config git zlib1g-dev libgtest-dev
      openmpi-bin libopenmpi-dev libcli11-dev nlohmann-json3-dev libopenblas-dev libpcre2-dev libssl-dev
      bible-kjv python3-numpy python3-matplotlib python3-pip clang libclang-rt-14-dev iproute2 util-linux "$@")
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "need root or sudo to install: ${missing[*]}"
    SUDO="sudo"
  fi
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- the GPT-2 BPE ranks ------------------------------------------------------------------------
# 50,256 base64 byte strings with their ranks, as tiktoken reads them; from the MIT-licensed source
# package of openai-whisper on PyPI. The sha256 is pinned here and in src/data/bpe.cpp (kGpt2RanksSha256).
WHISPER_VERSION=20250625
RANKS_SHA256=306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930
HOME_DIR=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
CACHE=${MC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME_DIR/.cache}/minicolossus}
RANKS=$CACHE/gpt2.tiktoken
# sha_ok FILE: FILE is a regular file with the pinned sha256 (read from stdin: any path works).
sha_ok() { [ -f "$1" ] && [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$RANKS_SHA256" ]; }
sha_ok "$RANKS" && exit 0
echo "setup.sh: fetching the GPT-2 BPE ranks (openai-whisper==$WHISPER_VERSION source package, PyPI) into $RANKS"
mkdir -p "$CACHE" || fail "cannot create the cache directory $CACHE (set MC_CACHE_DIR)"
# The download and the extracted file stay in a temporary directory beside the target until the file is
# checked; then one rename puts it in place (no partial file under the name, even with several runs at once).
TMP=$(mktemp -d "$CACHE/gpt2.fetch.XXXXXX") || fail "cannot write in $CACHE (set MC_CACHE_DIR)"
trap 'rm -rf "$TMP"' EXIT
# Debian's python (its pip comes with python3-pip above), not whichever python3 is first on PATH.
/usr/bin/python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
  "openai-whisper==$WHISPER_VERSION" -d "$TMP" >&2 ||
  fail "cannot download openai-whisper==$WHISPER_VERSION from PyPI (network?)"
SDIST=("$TMP"/openai[-_]whisper-"$WHISPER_VERSION".tar.gz)
[ -f "${SDIST[0]}" ] || fail "pip download left no openai-whisper source package in $TMP: $(ls -m "$TMP")"
tar -xzOf "${SDIST[0]}" --wildcards "*/whisper/assets/gpt2.tiktoken" >"$TMP/gpt2.tiktoken" ||
  fail "no whisper/assets/gpt2.tiktoken in $(basename "${SDIST[0]}")"
sha_ok "$TMP/gpt2.tiktoken" ||
  fail "gpt2.tiktoken from openai-whisper==$WHISPER_VERSION: sha256 mismatch (expected $RANKS_SHA256)"
chmod 644 "$TMP/gpt2.tiktoken"
# -T: a directory in the way is an error, not a place to move the file into.
mv -fT "$TMP/gpt2.tiktoken" "$RANKS" || fail "cannot put the ranks in place at $RANKS"
