#!/usr/bin/env bash
# Idle memory of two gateway builds side by side in one run, on both event drivers: server RSS
# per idle subscribed connection (`loadgen idle --server-pid` on `/broadcast`, where connecting
# subscribes). Each round starts every (build, driver) gateway fresh, one at a time, alternating
# builds, so drift on a shared machine hits both alike. Ratios are B/A.
#
#   cargo build --release -p gateway -p loadgen
#   cp "$CARGO_TARGET_DIR/release/gateway" /tmp/gateway-before   # (on the older commit)
#   GATEWAY_A=/tmp/gateway-before bench/idle.sh
#
# Environment: GATEWAY_A (required: the build compared against), GATEWAY_B (default: this
# tree's release build), LOADGEN (default: this tree's release build), CONNS (10000), ROUNDS
# (3), THREADS (1: gateway shards), SERVER_CPU (1), CLIENT_CPU (0), DRIVERS ("epoll uring").
# RSS counts the process's own memory; the kernel's socket buffers are not in it (the script
# prints the kernel's TCP memory, `/proc/net/sockstat` `mem` in pages, next to each figure).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CARGO_TARGET_DIR:-target}/release
a=${GATEWAY_A:?set GATEWAY_A to the gateway binary to compare against}
b=${GATEWAY_B:-$bin/gateway}
lg=${LOADGEN:-$bin/loadgen}
conns=${CONNS:-10000}
rounds=${ROUNDS:-3}
threads=${THREADS:-1}
server_cpu=${SERVER_CPU:-1}
client_cpu=${CLIENT_CPU:-0}
drivers=${DRIVERS:-epoll uring}

work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# tcp_pages: the kernel's TCP memory now, in pages (/proc/net/sockstat).
tcp_pages() {
  awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat
}

# measure LABEL BINARY DRIVER ROUND: a fresh gateway, CONNS idle subscribers, its RSS.
measure() {
  local label=$1 gw=$2 driver=$3 round=$4 port
  : >"$work/gw.out" # exists before the background process opens it, for the reads below
  taskset -c "$server_cpu" "$gw" --threads "$threads" --driver "$driver" --log-level warn \
    --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --handshake-timeout 60s \
    >"$work/gw.out" 2>"$work/gw.err" &
  pid=$!
  port=
  for _ in $(seq 100); do
    port=$(sed -nE 's/^listening on 127\.0\.0\.1:([0-9]+)$/\1/p' "$work/gw.out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "the gateway did not start: $(cat "$work/gw.err")" >&2; exit 1; }
  local before
  before=$(tcp_pages)
  taskset -c "$client_cpu" "$lg" idle --url "ws://127.0.0.1:$port/broadcast" -c "$conns" \
    --threads 1 --quiet --connect-timeout 120s --warmup 1s --duration 1s \
    --server-pid "$pid" --json "$work/$label-$driver-$round.json"
  echo $(($(tcp_pages) - before)) >"$work/$label-$driver-$round.tcp"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
}

for round in $(seq "$rounds"); do
  for driver in $drivers; do
    measure a "$a" "$driver" "$round"
    measure b "$b" "$driver" "$round"
  done
done

python3 - "$work" "$rounds" "$conns" "$drivers" <<'EOF'
import json, os, statistics, sys
work, rounds, conns, drivers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
page = os.sysconf("SC_PAGE_SIZE")
def rss(label, driver):
    return statistics.median(
        json.load(open(f"{work}/{label}-{driver}-{r}.json"))["results"]["server"]["rss_per_connection_bytes"]
        for r in range(1, rounds + 1))
def tcp(label, driver):
    return statistics.median(int(open(f"{work}/{label}-{driver}-{r}.tcp").read()) * page / conns
                             for r in range(1, rounds + 1))
print(f"| driver ({conns} idle subscribers, median of {rounds}) | RSS/conn A | RSS/conn B | B / A | kernel TCP memory/conn A, B |")
print("| --- | ---: | ---: | ---: | ---: |")
for d in drivers:
    ra, rb = rss("a", d), rss("b", d)
    print(f"| {d} | {ra:,.0f} B | {rb:,.0f} B | {rb / ra:.2f} | {tcp('a', d):,.0f} B, {tcp('b', d):,.0f} B |")
EOF
