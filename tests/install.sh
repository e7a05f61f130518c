#!/usr/bin/env bash
# install.sh BUILD_DIR SOURCE_DIR - what `cmake --install` delivers works on
# its own: installs into a temporary prefix, then uses nothing else.
#   - fonte, fonte-broker and fonte-listener run from the prefix (fonte
#     finds libfonte.so through its $ORIGIN rpath);
#   - examples/hello/publisher.c compiles against the installed header
#     with `pkg-config --cflags --libs fonte`, -Wall -Werror;
#   - end to end: the installed `fonte up` on ephemeral ports, the
#     compiled publisher's 10 events durable, `fonte status` counts 10,
#     SIGTERM stops it with exit 0;
#   - the systemd units name the prefix's programs and pass
#     `systemd-analyze verify` (skipped, with a note, where it is absent).
set -euo pipefail
build=${1:?usage: install.sh BUILD_DIR SOURCE_DIR}
src=${2:?usage: install.sh BUILD_DIR SOURCE_DIR}
tmp=$(mktemp -d /tmp/fonte-install-XXXXXX)
up_pid=
cleanup() {
  [ -n "$up_pid" ] && kill -9 "$up_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "install: $*" >&2; exit 1; }

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for prog in fonte fonte-broker fonte-listener; do
  out=$(env -u LD_LIBRARY_PATH "$prefix/bin/$prog" --version) ||
    fail "$prog --version failed"
  case $out in
    "$prog "[0-9]*) ;;
    *) fail "$prog --version printed '$out'" ;;
  esac
done

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
# shellcheck disable=SC2046 # pkg-config's words are meant to split
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/hello-publisher" \
  "$src/examples/hello/publisher.c" $(pkg-config --cflags --libs fonte) ||
  fail "examples/hello/publisher.c does not build against the install"

# the installed fonte up; its stdout through a pipe, read with a timeout
mkfifo "$tmp/up.out"
"$prefix/bin/fonte" up --data "$tmp/data" --ingress 'tcp://127.0.0.1:*' \
  --egress 'tcp://127.0.0.1:*' --query 'tcp://127.0.0.1:*' \
  >"$tmp/up.out" 2>"$tmp/up.err" &
up_pid=$!
exec 3<"$tmp/up.out"
declare -A ep=()
while read -r -t 20 -u 3 key value; do
  [ "$key" = ready ] && break
  ep[$key]=$value
done
[ -n "${ep[query]:-}" ] || fail "fonte up did not get ready: $(cat "$tmp/up.err")"

FONTE_INGRESS=${ep[ingress]} FONTE_EGRESS=${ep[egress]} \
  FONTE_QUERY=${ep[query]} LD_LIBRARY_PATH=$prefix/lib \
  "$tmp/hello-publisher" 10 >/dev/null || fail "hello-publisher failed"
events=$("$prefix/bin/fonte" status --query "${ep[query]}" |
  awk '$1 == "events" { print $2 }')
[ "$events" = 10 ] || fail "fonte status: events '$events', not 10"
kill -TERM "$up_pid"
for _ in $(seq 200); do # it stops within a second or two: 20 s at most
  kill -0 "$up_pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$up_pid" 2>/dev/null && fail "fonte up still runs 20 s after SIGTERM"
status=0
wait "$up_pid" || status=$?
up_pid=
[ "$status" = 0 ] || fail "fonte up exited $status after SIGTERM"

# the units, from this prefix and from one with a space in it
spaced="$tmp/with space"
for p in "$prefix" "$spaced"; do
  cmake --install "$build" --prefix "$p" >/dev/null
  for prog in fonte-broker fonte-listener; do
    unit=$p/share/fonte/systemd/$prog.service
    grep -qFx "ExecStart=\"$p/bin/$prog\"" "$unit" ||
      fail "$unit: ExecStart is not \"$p/bin/$prog\""
  done
  grep -qFx "$p/share/fonte/systemd/fonte-broker.service" \
    "$build/install_manifest.txt" ||
    fail "the units are not in install_manifest.txt"
done
if command -v systemd-analyze >/dev/null; then
  for unit in "$prefix"/share/fonte/systemd/*.service \
              "$spaced"/share/fonte/systemd/*.service; do
    systemd-analyze verify "$unit" ||
      fail "systemd-analyze verify $unit"
  done
else
  echo "install: note: no systemd-analyze here; the units were not verified"
fi
echo "install: ok ($prefix)"
