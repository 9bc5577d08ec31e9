#!/usr/bin/env bash
# Channel history measured side by side in one run, one node (history in memory) against two
# nodes on one Redis (history in Redis streams), history on against off:
#
# 1. publish cost: loadgen fanout through the gateway adapter (64 B publications over /ws to
#    raw subscribers on the same node) at a fixed rate on channels without history and with
#    (`--history loadgen.=1000/10m`): gateway CPU per delivered message, delivery latency
#    p50/p99, Redis CPU per publish, gateway RSS;
# 2. Redis memory per kept publication (used_memory over the stream entries kept);
# 3. recovery time for 300 missed publications (bench/history_recovery.py, Python websockets):
#    back on the same node without Redis, on the same node with Redis, on the other node.
#
# Usage: bench/history.sh [SECONDS] [RATE]   (release build first:
#        cargo build --release -p gateway -p loadgen; needs redis-server and python3 websockets)
set -euo pipefail
secs=${1:-5}
rate=${2:-2000}
here=$(cd "$(dirname "$0")" && pwd)
target=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
key=bench-history-key
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
out=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$out"
}
trap cleanup EXIT

redis_port=$(free)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --protected-mode no --loglevel warning >"$out/redis.log" 2>&1 &
pids+=($!)
rcli() { redis-cli -p "$redis_port" "$@"; }
for _ in $(seq 50); do rcli ping >/dev/null 2>&1 && break; sleep 0.1; done

# start NAME ARGS...: a gateway on free ports; sets NAME_port, NAME_api, NAME_pid.
start() {
  local name=$1; shift
  local port api
  port=$(free); api=$(free)
  "$target/gateway" --listen "127.0.0.1:$port" --api-listen "127.0.0.1:$api" --api-key "$key" \
    --threads 1 --log-level warn "$@" >"$out/$name.log" 2>&1 &
  pids+=($!)
  printf -v "${name}_port" %s "$port"
  printf -v "${name}_api" %s "$api"
  printf -v "${name}_pid" %s "$!"
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$api/healthz" >/dev/null && return; sleep 0.1; done
  echo "gateway $name did not start" >&2; cat "$out/$name.log" >&2; exit 1
}
history=(--history "loadgen.=1000/10m" --history "chat:=1000/10m")
start mem "${history[@]}"
start a "${history[@]}" --broker "redis://127.0.0.1:$redis_port" --node-id 1
start b "${history[@]}" --broker "redis://127.0.0.1:$redis_port" --node-id 2

redis_cpu() { rcli info cpu | awk -F: '/used_cpu_(sys|user):/ {s += $2} END {printf "%.6f", s}'; }

# run NAME NODE: one fanout run against gateway NODE; prints its row.
run() {
  local name=$1 node=$2
  local port_var="${node}_port" pid_var="${node}_pid"
  local before after
  before=$(redis_cpu)
  "$target/loadgen" fanout --adapter gateway --url "ws://127.0.0.1:${!port_var}" \
    --subscribers 100 --publishers 4 --channels 4 --rate "$rate" -s 64 \
    --threads 1 --warmup 1s --duration "${secs}s" --drain 1s --quiet \
    --server-pid "${!pid_var}" --json "$out/$name.json" >/dev/null
  after=$(redis_cpu)
  python3 - "$out/$name.json" "$name" "$before" "$after" <<'PY'
import json, sys
path, name, before, after = sys.argv[1:5]
r = json.load(open(path))["results"]
lat, srv, d = r["latency"], r["server"], r["delivery"] or {}
pubs = max(r["all"]["sent"], 1)
redis_us = (float(after) - float(before)) * 1e6 / pubs
print(f"{name:<22} {srv['cpu_us_per_message']:>8.2f} us/msg {lat['p50']/1e3:>9.0f} us p50"
      f" {lat['p99']/1e3:>9.0f} us p99 {redis_us:>8.1f} redis us/publish"
      f" {srv['rss_bytes']/2**20:>7.1f} MiB rss  lost {d.get('lost', 0)}")
PY
}

echo "publish cost: ${rate}/s for ${secs}s, 64 B, 4 publishers, 4 channels x 25 raw subscribers"
# loadgen's channels are loadgen.N. The 'off' side runs on gateways whose only history rule is
# for another prefix: the same binary and flags, and no history for these channels.
start memoff --history "other.=1000/10m"
start aoff --history "other.=1000/10m" --broker "redis://127.0.0.1:$redis_port" --node-id 3
run "one node, off" memoff
run "one node, history" mem
run "redis, off" aoff
run "redis, history" a

entries=0
for k in $(rcli --scan --pattern '{gw:loadgen.*}:s'); do
  entries=$((entries + $(rcli xlen "$k")))
done
used=$(rcli info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
empty=$(rcli info memory | awk -F: '/^used_memory_startup:/ {print $2}' | tr -d '\r')
echo
echo "redis memory: $entries publications kept (64 B data), $(( (used - empty) / (entries > 0 ? entries : 1) )) B each (used_memory over startup)"

echo
echo "recovery of 300 missed publications (20 rounds; from the subscribe to the 300th message)"
rec() { # label first back api
  python3 "$here/history_recovery.py" --label "$1" --first "ws://127.0.0.1:$2/ws" \
    --back "ws://127.0.0.1:$3/ws" --api "http://127.0.0.1:$4" --key "$key"
}
rec "one node, memory" "$mem_port" "$mem_port" "$mem_api"
rec "redis, same node" "$a_port" "$a_port" "$a_api"
rec "redis, other node" "$a_port" "$b_port" "$a_api"
