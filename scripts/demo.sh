#!/usr/bin/env bash
# make demo: what fonte can show so far, narrated one line per step.
set -euo pipefail
build=${1:-build}
echo "demo: fonte is built in $build/."
echo "demo: running the wire-format tests (codec, flags, errors)..."
(cd "$build" && ctest -R '^(codec|flags|errors)$' --output-on-failure) | tail -3
echo "demo: the broker, the listener and the client library are being built"
echo "demo: (issues 3-5); this demo will run the whole pipeline once they land."
