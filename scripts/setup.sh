#!/usr/bin/env bash
# Installs every system dependency minicolossus needs, with apt-get, only when something is missing.
# Idempotent and non-interactive; silent when all is there. Needs root (or sudo) the first time.
# Extra Debian packages a script needs for itself may be named as arguments (package.sh: patchelf).
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config git zlib1g-dev libgtest-dev
      openmpi-bin libopenmpi-dev libcli11-dev nlohmann-json3-dev libopenblas-dev
      bible-kjv python3-numpy python3-matplotlib clang libclang-rt-14-dev iproute2 util-linux "$@")
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
