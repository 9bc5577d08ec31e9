#!/usr/bin/env bash
# Native TLS against plain TCP, side by side in one run, with the project's own loadgen:
#   - echo: msgs/s and server CPU per message (closed loop, C connections x W in flight);
#   - connect: handshakes/s (TCP + TLS + WebSocket upgrade, as fast as accepted);
#   - idle: server RSS per idle connection (loadgen idle --server-pid).
# Each round starts two fresh gateways (one plain, one with --tls-cert) on the same server core
# and measures both, alternating, so drift on a shared machine hits both alike (idle memory first,
# while the processes are fresh). Ratios are TLS/plain. Server CPU per handshake comes from the
# gateway's /proc/<pid>/stat around the connect run (10 ms ticks: keep HANDSHAKES in the
# hundreds or more).
#
#   cargo build --release -p gateway -p loadgen && bench/tls.sh
#
# Environment: ROUNDS (3), DURATION (3s), CONNS (50), WINDOW (4), SIZE (256), HANDSHAKES (1000),
# IDLE (2000), SERVER_CPU (1), CLIENT_CPU (0), DRIVER (auto).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CARGO_TARGET_DIR:-target}/release
rounds=${ROUNDS:-3}
duration=${DURATION:-3s}
conns=${CONNS:-50}
window=${WINDOW:-4}
size=${SIZE:-256}
handshakes=${HANDSHAKES:-1000}
idle=${IDLE:-2000}
server_cpu=${SERVER_CPU:-1}
client_cpu=${CLIENT_CPU:-0}
driver=${DRIVER:-auto}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && { cat "$work"/*.err >&2; }
  rm -rf "$work"
}
trap cleanup EXIT

# A throwaway CA and a leaf for localhost.
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
    -out ca.pem -days 1 -subj "/CN=bench CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key \
    -out leaf.csr -subj /CN=localhost 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >leaf.ext
  openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem \
    -days 1 -extfile leaf.ext 2>/dev/null
)

# start NAME ARGS...: a one-thread gateway on the server core; sets $port and $pid.
start() {
  local name=$1
  shift
  : >"$work/$name.out" # exists before the background process opens it, for the reads below
  taskset -c "$server_cpu" "$bin/gateway" --threads 1 --driver "$driver" --log-level warn \
    --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --handshake-timeout 30s "$@" \
    >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    port=$(sed -nE 's/^listening on 127\.0\.0\.1:([0-9]+)$/\1/p' "$work/$name.out")
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "the $name gateway did not start: $(cat "$work/$name.err")" >&2
  exit 1
}

loadgen() {
  taskset -c "$client_cpu" "$bin/loadgen" "$@" --threads 1 --quiet --connect-timeout 120s
}

# CPU time (user + system, clock ticks) of a process.
ticks() {
  awk '{print $14 + $15}' "/proc/$1/stat"
}

for round in $(seq "$rounds"); do
  start plain
  plain_port=$port plain_pid=$pid
  start tls --tls-cert "$work/leaf.pem" --tls-key "$work/leaf.key"
  tls_port=$port tls_pid=$pid
  for kind in idle echo connect; do
    for mode in plain tls; do
      if [ "$mode" = plain ]; then
        url="ws://127.0.0.1:$plain_port/echo" pid=$plain_pid ca=()
      else
        url="wss://127.0.0.1:$tls_port/echo" pid=$tls_pid ca=(--ca-file "$work/ca.pem")
      fi
      out="$work/$kind-$mode-$round.json"
      case $kind in
        idle)
          loadgen idle --url "$url" "${ca[@]}" -c "$idle" --warmup 1s --duration 1s \
            --server-pid "$pid" --json "$out" ;;
        echo)
          loadgen echo --url "$url" "${ca[@]}" -c "$conns" -w "$window" -s "$size" \
            --warmup 1s --duration "$duration" --server-pid "$pid" --json "$out" ;;
        connect)
          before=$(ticks "$pid")
          loadgen connect --url "$url" "${ca[@]}" -c "$handshakes" --json "$out"
          echo "$(($(ticks "$pid") - before))" >"$work/ticks-$mode-$round" ;;
      esac
    done
  done
  kill "$plain_pid" "$tls_pid"
  wait "$plain_pid" "$tls_pid" 2>/dev/null || true
done

python3 - "$work" "$rounds" "$handshakes" "$(getconf CLK_TCK)" <<'EOF'
import json, statistics, sys
work, rounds, handshakes, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def med(kind, mode, get):
    return statistics.median(get(json.load(open(f"{work}/{kind}-{mode}-{r}.json"))["results"])
                             for r in range(1, rounds + 1))
rows = [
    ("echo msgs/s (received)", "echo", lambda r: r["receive_rate"]),
    ("server CPU us per echoed message", "echo", lambda r: r["server"]["cpu_us_per_message"]),
    ("echo p99 latency (us)", "echo", lambda r: r["latency"]["p99"] / 1000),
    ("handshakes/s (connect phase)", "connect", lambda r: r["connect_rate"]),
    ("connect p99 latency (ms)", "connect", lambda r: r["connect_latency"]["p99"] / 1e6),
    ("server RSS bytes per idle connection", "idle", lambda r: r["server"]["rss_per_connection_bytes"]),
]
print(f"| figure (median of {rounds}) | plain | TLS | TLS / plain |")
print("| --- | ---: | ---: | ---: |")
for name, kind, get in rows:
    p, t = med(kind, "plain", get), med(kind, "tls", get)
    print(f"| {name} | {p:,.1f} | {t:,.1f} | {t / p:.2f} |")
def cpu_us(mode):
    return statistics.median(int(open(f"{work}/ticks-{mode}-{r}").read()) / hz / handshakes * 1e6
                             for r in range(1, rounds + 1))
p, t = cpu_us("plain"), cpu_us("tls")
ratio = f"{t / p:.2f}" if p > 0 else "(plain under one tick)"
print(f"| server CPU us per connection (connect run) | {p:,.1f} | {t:,.1f} | {ratio} |")
EOF
