#!/usr/bin/env bash
# NATS against Redis as the broker between two gateway nodes, side by side in one run, with the
# project's own loadgen: `loadgen fanout` subscribers on node B, the publisher through node A's
# backend API, so every delivery crosses the broker. Reports deliveries/s, p99 delivery latency,
# loss, and the broker's bytes per publish: Redis `INFO stats` (total_net_input_bytes /
# total_net_output_bytes: every byte on its sockets, framing, pings and heartbeats included) and
# NATS `/varz` (in_bytes / out_bytes: message payloads only, heartbeats included). Each round
# runs both brokers, alternating which goes first, on fresh servers and fresh nodes, so drift on
# a shared machine hits both alike. Ratios are NATS/Redis.
#
#   cargo build --release -p gateway -p loadgen && bench/broker.sh
#
# Environment: ROUNDS (3), DURATION (5s), SUBSCRIBERS (500), RATE (200 publishes/s), SIZE (64),
# THREADS (1 per gateway node). Needs redis-server, redis-cli, nats-server, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${BIN:-${CARGO_TARGET_DIR:-target}/release}
rounds=${ROUNDS:-3}
duration=${DURATION:-5s}
subscribers=${SUBSCRIBERS:-500}
rate=${RATE:-200}
size=${SIZE:-64}
threads=${THREADS:-1}
key=bench-broker-key

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# stop PID: end one process this script started.
stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# node NAME URL ID: a gateway node on broker URL; sets $ws_port, $api_port and $pid.
node() {
  : >"$work/$1.out" # exists before the background process opens it, for the reads below
  "$bin/gateway" --threads "$threads" --log-level warn --api-key "$key" \
    --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --broker "$2" --node-id "$3" \
    >"$work/$1.out" 2>"$work/$1.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    ws_port=$(sed -nE 's/^listening on 127\.0\.0\.1:([0-9]+)$/\1/p' "$work/$1.out")
    api_port=$(sed -nE 's/^api listening on 127\.0\.0\.1:([0-9]+)$/\1/p' "$work/$1.out")
    if [ -n "$ws_port" ] && [ -n "$api_port" ] &&
      curl -sf "http://127.0.0.1:$api_port/healthz" >/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "node $1 did not connect to $2: $(cat "$work/$1.err")" >&2
  exit 1
}

# broker_bytes KIND: "IN OUT" as the broker counts them.
broker_bytes() {
  case $1 in
    redis)
      redis-cli -p "$broker_port" info stats | tr -d '\r' |
        awk -F: '/^total_net_input_bytes/{i=$2} /^total_net_output_bytes/{o=$2} END{print i, o}'
      ;;
    nats)
      curl -sf "http://127.0.0.1:$monitor_port/varz" |
        python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["in_bytes"], v["out_bytes"])'
      ;;
  esac
}

# run KIND ROUND: one measurement; appends a line to $work/results.
run() {
  local kind=$1 round=$2 url
  broker_port=$(free_port)
  case $kind in
    redis)
      redis-server --port "$broker_port" --bind 127.0.0.1 --save "" --appendonly no \
        >"$work/redis.log" 2>&1 &
      broker_pid=$!
      for _ in $(seq 100); do redis-cli -p "$broker_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
      url=redis://127.0.0.1:$broker_port
      ;;
    nats)
      monitor_port=$(free_port)
      nats-server -a 127.0.0.1 -p "$broker_port" -m "$monitor_port" >"$work/nats.log" 2>&1 &
      broker_pid=$!
      for _ in $(seq 100); do curl -sf "http://127.0.0.1:$monitor_port/varz" >/dev/null && break; sleep 0.05; done
      url=nats://127.0.0.1:$broker_port
      ;;
  esac
  pids+=("$broker_pid")
  node a "$url" 1
  local a_pid=$pid a_api=$api_port
  node b "$url" 2
  local b_pid=$pid b_ws=$ws_port
  read -r in0 out0 < <(broker_bytes "$kind")
  "$bin/loadgen" fanout --adapter gateway --url "ws://127.0.0.1:$b_ws" \
    --api-url "http://127.0.0.1:$a_api" --api-key "$key" --subscribers "$subscribers" \
    --publishers 1 --channels 1 --rate "$rate" -s "$size" --duration "$duration" \
    --quiet --json "$work/$kind-$round.json" >/dev/null
  read -r in1 out1 < <(broker_bytes "$kind")
  python3 - "$work/$kind-$round.json" "$kind" "$round" "$in0" "$out0" "$in1" "$out1" \
    >>"$work/results" <<'EOF'
import json, sys
path, kind, rnd, in0, out0, in1, out1 = sys.argv[1:]
r = json.load(open(path))["results"]
sent = max(r["all"]["sent"], 1)
lost = (r.get("delivery") or {}).get("lost", 0)
print(kind, rnd, round(r["receive_rate"]), r["latency"]["p99"] / 1e6, lost,
      (int(in1) - int(in0)) / sent, (int(out1) - int(out0)) / sent)
EOF
  stop "$a_pid"
  stop "$b_pid"
  stop "$broker_pid"
}

for round in $(seq "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="redis nats"; else order="nats redis"; fi
  for kind in $order; do run "$kind" "$round"; done
done

python3 - "$work/results" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"{'broker':6} {'round':>5} {'deliveries/s':>12} {'p99 ms':>8} {'lost':>6} "
      f"{'in B/pub':>9} {'out B/pub':>9}")
for k, rnd, d, p99, lost, bi, bo in rows:
    print(f"{k:6} {rnd:>5} {int(d):>12} {float(p99):>8.2f} {lost:>6} "
          f"{float(bi):>9.1f} {float(bo):>9.1f}")
def median(kind, col):
    v = sorted(float(r[col]) for r in rows if r[0] == kind)
    return v[len(v) // 2]
print()
print("NATS/Redis (medians over rounds):")
for name, col in [("deliveries/s", 2), ("p99", 3), ("broker bytes in per publish", 5),
                  ("broker bytes out per publish", 6)]:
    r, n = median("redis", col), median("nats", col)
    print(f"  {name:30} {n / r if r else float('nan'):.2f}  (redis {r:.2f}, nats {n:.2f})")
EOF
