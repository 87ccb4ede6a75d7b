#!/usr/bin/env bash
# Install the Debian packages Ferry builds and tests with, or print the exact command.
# Usage: scripts/deps.sh [extra-package ...]   (bench adds qemu-system-x86 etc.)
set -euo pipefail
pkgs=(gcc meson ninja-build pkg-config python3 libjansson-dev libjsmn-dev libxxhash-dev zlib1g-dev libcmocka-dev
      clang libclang-rt-14-dev clang-format "$@")
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
else
    echo "deps: missing Debian packages. Run:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
