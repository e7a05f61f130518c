#!/usr/bin/env bash
# Bounded libFuzzer run of every fuzz target: scripts/fuzz.sh BIN_DIR SECONDS
#
# Each target starts from its seed corpus (tests/fuzz/corpus/<name>/, read
# only) plus a scratch corpus in a temp dir, runs for SECONDS, and fails
# the script on the first crash, leak or sanitizer report. Crash inputs
# are kept in the temp dir, whose path is printed.
set -euo pipefail
bin=${1:?usage: fuzz.sh BIN_DIR SECONDS}
secs=${2:-20}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/fonte-fuzz-XXXXXX)
status=0
for target in event request text; do
  exe="$bin/fuzz_$target"
  [ -x "$exe" ] || { echo "fuzz: $exe not built" >&2; exit 1; }
  mkdir -p "$work/$target"
  echo "fuzz: $target for ${secs}s"
  if ! "$exe" -max_total_time="$secs" -max_len=8192 -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/$target/" \
        "$work/$target" "$here/tests/fuzz/corpus/$target" \
        >"$work/$target.log" 2>&1; then
    echo "fuzz: $target FAILED; log and crash input in $work" >&2
    tail -40 "$work/$target.log" >&2
    status=1
  else
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$work/$target.log" | sed "s/^/fuzz: $target /"
  fi
done
[ $status -eq 0 ] && rm -rf "$work"
exit $status
