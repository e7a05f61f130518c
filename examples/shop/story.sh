#!/usr/bin/env bash
# story.sh - the shop's story end to end (docs/shop.md), one plain line
# per step. `make demo` runs it at demo size; ctest runs it small, and
# once more with a bug injected into revenue.
#
#   story.sh --bin DIR [--users N] [--orders M] [--seed S] [--inject-bug]
#
# 1. fonte's servers on free ports, data in a temporary directory;
# 2. shop-revenue, waiting until it is subscribed;
# 3. shop-driver: shop-users and shop-orders publish a seeded workload;
# 4. shop-verify: revenue's artifact against the store;
# 5. the artifact is deleted, revenue restarts with --rebuild and gets it
#    back from a targeted replay of every user and order; verify again,
#    and check that nothing was created: same users, same store.
# With --inject-bug revenue ignores order.cancelled: step 4 must fail,
# with mismatches printed, and the script exits 0 only if it did.
#
# Every wait has a timeout; on exit (any exit) every process it started
# is stopped and the temporary directory removed. Nothing is written
# outside it.
set -euo pipefail

bin= users=200 orders=1000 seed=42 bug=0
while [ $# -gt 0 ]; do
    case $1 in
    --bin) bin=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --orders) orders=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --inject-bug) bug=1; shift ;;
    *) echo "usage: $0 --bin DIR [--users N] [--orders M] [--seed S] [--inject-bug]" >&2; exit 2 ;;
    esac
done
[ -n "$bin" ] && [ -x "$bin/shop-revenue" ] || { echo "shop: no shop programs in '$bin'" >&2; exit 2; }
bin=$(cd "$bin" && pwd)

# How fonte's servers run: "up" = one `fonte up` process (broker and
# listener together, ports chosen by the kernel); "split" =
# fonte-broker and fonte-listener as two processes on ports picked here.
servers=up
[ -x "$bin/fonte" ] || servers=split

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fonte-shop.XXXXXX")
pids=()
SECONDS=0

say() { printf 'shop: %s\n' "$*"; }

# stop_pid PID: SIGTERM, up to 10 s to exit, then SIGKILL. Returns the
# process's exit status (every program here exits 0 on SIGTERM) and
# forgets the pid.
stop_pid() {
    local pid=$1 i rc=0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || rc=$?
    local keep=() p
    for p in "${pids[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    pids=("${keep[@]+"${keep[@]}"}")
    return $rc
}

# Stops everything still running, newest first; fails if one did not
# exit 0.
stop_all() {
    local i bad=0
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        stop_pid "${pids[i]}" || bad=1
    done
    return $bad
}

cleanup() {
    local rc=$?
    stop_all || true
    if [ $rc -ne 0 ]; then
        for f in "$tmp"/*.log; do
            [ -f "$f" ] || continue
            echo "--- last lines of $(basename "$f")" >&2
            tail -n 15 "$f" >&2
        done
    fi
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "shop: FAILED: $*" >&2; exit 1; }

# wait_for FILE PATTERN SECONDS PID: until FILE has a line matching
# PATTERN; fails if PID exits first or time runs out.
wait_for() {
    local file=$1 pattern=$2 secs=$3 pid=$4 i
    for ((i = 0; i < secs * 20; i++)); do
        grep -q -- "$pattern" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || fail "$(basename "$file" .log) exited early"
        sleep 0.05
    done
    fail "no '$pattern' in $(basename "$file") after $secs s"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Three consecutive free ports below Linux's ephemeral range, so that
# neither a default `fonte up` (7701-7703) nor outgoing connections collide.
pick_ports() {
    local base i
    for i in $(seq 50); do
        base=$((20000 + RANDOM % 9000))
        if port_free $base && port_free $((base + 1)) && port_free $((base + 2)); then
            echo $base
            return 0
        fi
    done
    fail "no free ports"
}

start_servers() {
    local base any=tcp://127.0.0.1:*
    export FONTE_LOG_LEVEL=warn
    if [ "$servers" = up ]; then
        # Bound to port 0 ("*"): `fonte up` prints what it got, then "ready".
        "$bin/fonte" up --data "$tmp/data" --ingress "$any" --egress "$any" \
            --query "$any" >"$tmp/fonte-up.log" 2>&1 &
        pids+=($!)
        wait_for "$tmp/fonte-up.log" '^ready' 30 $!
        export FONTE_INGRESS=$(sed -n 's/^ingress //p' "$tmp/fonte-up.log")
        export FONTE_EGRESS=$(sed -n 's/^egress //p' "$tmp/fonte-up.log")
        export FONTE_QUERY=$(sed -n 's/^query //p' "$tmp/fonte-up.log")
    else
        base=$(pick_ports)
        export FONTE_INGRESS=tcp://127.0.0.1:$base
        export FONTE_EGRESS=tcp://127.0.0.1:$((base + 1))
        export FONTE_QUERY=tcp://127.0.0.1:$((base + 2))
        "$bin/fonte-broker" >"$tmp/broker.log" 2>&1 &
        pids+=($!)
        local broker=$!
        "$bin/fonte-listener" --data "$tmp/data" >"$tmp/listener.log" 2>&1 &
        pids+=($!)
        wait_until_bound $broker $!
    fi
}

# The servers log at warn level (quiet), so readiness is a bound port.
wait_until_bound() {
    local i
    for ((i = 0; i < 600; i++)); do
        if ! port_free "${FONTE_INGRESS##*:}" && ! port_free "${FONTE_QUERY##*:}"; then
            return 0
        fi
        kill -0 "$1" 2>/dev/null || fail "fonte-broker exited early"
        kill -0 "$2" 2>/dev/null || fail "fonte-listener exited early"
        sleep 0.05
    done
    fail "the servers did not bind in 30 s"
}

revenue_pid=
start_revenue() { # start_revenue LOG [flags...]
    local log=$1
    shift
    "$bin/shop-revenue" --artifact "$tmp/revenue.artifact" "$@" >"$log" 2>&1 &
    revenue_pid=$!
    pids+=($revenue_pid)
}

verify() { # verify OUTFILE: runs shop-verify, prints its output, returns its status
    local rc=0
    "$bin/shop-verify" --artifact "$tmp/revenue.artifact" --wait 30s >"$1" 2>&1 || rc=$?
    sed 's/^/    /' "$1"
    return $rc
}

if [ $servers = up ]; then
    say "fonte up starts fonte's broker and listener on free ports, data in $tmp"
else
    say "fonte-broker and fonte-listener start on free ports, data in $tmp"
fi
start_servers
say "they listen: ingress $FONTE_INGRESS, egress $FONTE_EGRESS, query $FONTE_QUERY"

# One user exists before revenue does: revenue never hears its
# user.created, and must ask the source of truth when its first order
# comes (fonte_fetch) - the seed's "ask for the customer's data".
say "shop-users creates user 900001 before revenue is running"
echo "create 900001 early@shop.example Early Bird" | "$bin/shop-users" \
    >"$tmp/early-users.log" 2>&1 || fail "shop-users failed"
total_users=$((users + 1))

if [ $bug = 1 ]; then
    say "shop-revenue starts WITH AN INJECTED BUG: it ignores order.cancelled"
    start_revenue "$tmp/revenue.log" --drop order.cancelled
else
    say "shop-revenue starts: it keeps revenue per user in its own artifact file"
    start_revenue "$tmp/revenue.log"
fi
wait_for "$tmp/revenue.log" 'shop-revenue: ready' 30 $revenue_pid

say "shop-driver feeds shop-users and shop-orders $users users and $orders orders (seed $seed)"
"$bin/shop-driver" --users "$users" --orders "$orders" --seed "$seed" \
    >"$tmp/driver.log" 2>&1 || fail "shop-driver failed"
grep -h -e '^shop-driver:' -e 'durable' "$tmp/driver.log" | sed 's/^/    /'
say "shop-orders places order 900001 for user 900001, whom revenue has never heard of"
printf 'place 900001 900001\nline 900001 book 2 1250\nship 900001\n' |
    "$bin/shop-orders" >"$tmp/early-orders.log" 2>&1 || fail "shop-orders failed"
if [ $servers = up ]; then
    say "fonte status: what the source of truth holds now"
    "$bin/fonte" status | grep -E '^(events|objects|sessions) ' | sed 's/^/    /'
fi

say "shop-verify recomputes revenue from fonte's store and compares it with the artifact"
if [ $bug = 1 ]; then
    if verify "$tmp/verify1.out"; then
        fail "verify did not catch the injected bug"
    fi
    grep -q '^verify: MISMATCH' "$tmp/verify1.out" || fail "verify failed without printing a mismatch"
    say "verify caught the injected bug (exit 1, mismatches above)"
    stop_all || fail "a process did not exit cleanly"
    ! grep -l -e 'Sanitizer' -e 'runtime error:' "$tmp"/*.log || fail "sanitizer reports above"
    exit 0
fi
verify "$tmp/verify1.out" || fail "verify failed on the live artifact"
grep -q "^verify: $total_users users" "$tmp/verify1.out" || fail "the store does not hold $total_users users"

say "revenue stops; its counters, then its artifact is deleted"
stop_pid $revenue_pid || fail "shop-revenue did not exit cleanly"
grep -h '^shop-revenue: [0-9]' "$tmp/revenue.log" | sed 's/^/    /'
fetches=$(sed -n 's/.* \([0-9]*\) fetches,.*/\1/p' "$tmp/revenue.log")
[ "${fetches:-0}" -ge 1 ] || fail "revenue never fetched the user it had not heard of"
rm -f "$tmp/revenue.artifact"
[ ! -e "$tmp/revenue.artifact" ] || fail "the artifact is still there"

say "revenue restarts with --rebuild: a targeted replay of every user and order, each with its dependencies"
start_revenue "$tmp/revenue2.log" --rebuild
wait_for "$tmp/revenue2.log" 'shop-revenue: rebuilt' 90 $revenue_pid
grep 'shop-revenue: rebuilt' "$tmp/revenue2.log" | sed 's/^/    /'

say "shop-verify again, on the rebuilt artifact"
verify "$tmp/verify2.out" || fail "verify failed on the rebuilt artifact"
# Same store figures as before: the rebuild created no user and no order.
cmp -s "$tmp/verify1.out" "$tmp/verify2.out" || fail "the store changed during the rebuild"
n=$(grep -c '^user ' "$tmp/revenue.artifact")
[ "$n" = "$total_users" ] || fail "the rebuilt artifact has $n users, not $total_users"
upserts=$(sed -n 's/.*(\([0-9]*\) replayed user.created upserted).*/\1/p' "$tmp/revenue2.log")
[ "${upserts:-0}" -gt 0 ] || fail "no replayed user.created reached revenue"
say "the rebuild created nothing: still $total_users users, each once; $upserts replayed user.created were upserts"

say "done in $SECONDS s; stopping everything"
stop_all || fail "a process did not exit cleanly"
! grep -l -e 'Sanitizer' -e 'runtime error:' "$tmp"/*.log || fail "sanitizer reports above"
