#!/usr/bin/env bash
# Reliability soak: scripts/soak.sh BIN_DIR MINUTES
#
# Runs test_reliability's chaos test (the broker, the listener or both
# SIGKILLed at 8 random points of a 300 000-event stream from three
# producers, then the store read back: every event exactly once, in
# publish order) again and again, each run with a seed of its own, for
# MINUTES. Stops at the first failure and prints its seed: rerun that
# schedule with FONTE_TEST_SEED=<seed> BIN_DIR/test_reliability
# --filter '*at_random*'. Logs go to a temp dir, kept on a failure.
set -euo pipefail
bin=${1:?usage: soak.sh BIN_DIR MINUTES}
minutes=${2:-10}
exe="$bin/test_reliability"
[ -x "$exe" ] || { echo "soak: $exe not built" >&2; exit 1; }
work=$(mktemp -d /tmp/fonte-soak-XXXXXX)
end=$(( $(date +%s) + minutes * 60 ))
runs=0
while [ "$(date +%s)" -lt "$end" ]; do
  seed=$(( (RANDOM << 15 | RANDOM) ))
  runs=$((runs + 1))
  if ! FONTE_TEST_SEED=$seed "$exe" --filter '*at_random*' \
        >"$work/run.log" 2>&1; then
    echo "soak: run $runs FAILED with seed $seed; log: $work/run.log" >&2
    tail -20 "$work/run.log" >&2
    exit 1
  fi
done
echo "soak: $runs runs in $minutes min, every event stored exactly once"
rm -rf "$work"
