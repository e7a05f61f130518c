#!/usr/bin/env bash
# Install fonte's build and test dependencies from Debian's packages.
#
# Idempotent: asks dpkg what is already there and installs only what is
# missing, through sudo when not root. Safe to run before every build;
# `make demo`, `make test` and .ci/run all call it first.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libzmq3-dev libczmq-dev
  libleveldb-dev libsnappy-dev
  libprotobuf-c-dev protobuf-c-compiler
  libcriterion-dev libjansson-dev
  clang libclang-rt-dev           # libFuzzer and the sanitizer runtimes
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "install-deps: not root and no sudo; install these by hand: ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
