#!/usr/bin/env bash
# make demo: the shop example end to end (docs/shop.md), one plain line
# per step. `make demo` has already installed what was missing and built
# fonte into $1 (default build/). The story itself is
# examples/shop/story.sh; everything it starts is stopped when it ends,
# and its data lives in a temporary directory that it removes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
echo "demo: fonte is built in $build/; now the shop's story: services, the source of truth, verify, rebuild."
exec "$root/examples/shop/story.sh" --bin "$build/bin" --users 200 --orders 1000 --seed 42
