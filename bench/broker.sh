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
# KINDS="redis cluster" compares a Redis Cluster of three masters (`--broker redis-cluster://`,
# sharded pub/sub; bytes summed over the masters) with one Redis instead; any list of redis,
# nats and cluster works, ratios are each kind over the first. Every run also reports the CPU
# time of both gateway nodes per delivery and of the broker servers per publish (from
# /proc/PID/stat, so Linux only).
#
# KINDS="redis rediss nats nats-tls" adds the same servers over TLS (`rediss://` and NATS's
# `tls://`, a certificate from a CA made here with openssl, trusted with `--broker-ca`): what
# encryption to the broker costs. Each delivery crosses the broker once per publish, so run it
# with few subscribers and a high rate (SUBSCRIBERS=1 RATE=5000) to see the cost per message.
#
#   cargo build --release -p gateway -p loadgen && bench/broker.sh
#   cargo build --release -p gateway -p loadgen && KINDS="redis cluster" bench/broker.sh
#   cargo build --release -p gateway -p loadgen &&
#     KINDS="redis rediss nats nats-tls" SUBSCRIBERS=1 RATE=5000 bench/broker.sh
#
# Environment: ROUNDS (3), DURATION (5s), SUBSCRIBERS (500), RATE (200 publishes/s), SIZE (64),
# THREADS (1 per gateway node), KINDS ("redis nats"). Needs redis-server, redis-cli,
# nats-server, curl, python3, and openssl for the TLS kinds.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${BIN:-${CARGO_TARGET_DIR:-target}/release}
rounds=${ROUNDS:-3}
duration=${DURATION:-5s}
subscribers=${SUBSCRIBERS:-500}
rate=${RATE:-200}
size=${SIZE:-64}
threads=${THREADS:-1}
read -r -a kinds <<<"${KINDS:-redis nats}"
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

# tls_files: a CA and a certificate for 127.0.0.1 it signs, once, in $work.
tls_files() {
  [ -f "$work/leaf.pem" ] && return 0
  (
    cd "$work"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
      -out ca.pem -days 1 -subj "/CN=bench CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key \
      -out leaf.csr -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem \
      -days 1 -extfile leaf.ext 2>/dev/null
  )
}

# node NAME URL ID: a gateway node on broker URL (trusting $broker_ca, if set); sets $ws_port,
# $api_port and $pid.
node() {
  : >"$work/$1.out" # exists before the background process opens it, for the reads below
  local ca=()
  [ -n "${broker_ca:-}" ] && ca=(--broker-ca "$broker_ca")
  "$bin/gateway" --threads "$threads" --log-level warn --api-key "$key" \
    --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --broker "$2" --node-id "$3" "${ca[@]}" \
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

# cpu_ticks PID...: user + system clock ticks the processes used so far.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

# start_cluster: three cluster masters on free ports (client and bus), slots split by
# `redis-cli --cluster create`; sets $url, $cluster_ports and $broker_pids.
start_cluster() {
  local i port bus
  cluster_ports=()
  for i in 1 2 3; do
    port=$(free_port)
    bus=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --cluster-enabled yes --cluster-port "$bus" --cluster-config-file "$work/nodes-$port.conf" \
      --cluster-node-timeout 1000 --cluster-require-full-coverage no --dir "$work" \
      >"$work/cluster-$port.log" 2>&1 &
    broker_pids+=($!)
    cluster_ports+=("$port")
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  done
  redis-cli --cluster create "${cluster_ports[@]/#/127.0.0.1:}" --cluster-replicas 0 \
    --cluster-yes >"$work/cluster-create.log" 2>&1
  for port in "${cluster_ports[@]}"; do
    for _ in $(seq 200); do
      redis-cli -p "$port" cluster info | grep -q cluster_state:ok && break
      sleep 0.05
    done
  done
  url=redis-cluster://$(printf '127.0.0.1:%s,' "${cluster_ports[@]}")
  url=${url%,}
}

# broker_bytes KIND: "IN OUT" as the broker counts them.
broker_bytes() {
  case $1 in
    redis | rediss)
      redis-cli -p "$broker_port" info stats | tr -d '\r' |
        awk -F: '/^total_net_input_bytes/{i=$2} /^total_net_output_bytes/{o=$2} END{print i, o}'
      ;;
    cluster)
      for port in "${cluster_ports[@]}"; do redis-cli -p "$port" info stats; done | tr -d '\r' |
        awk -F: '/^total_net_input_bytes/{i+=$2} /^total_net_output_bytes/{o+=$2} END{print i, o}'
      ;;
    nats | nats-tls)
      curl -sf "http://127.0.0.1:$monitor_port/varz" |
        python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["in_bytes"], v["out_bytes"])'
      ;;
  esac
}

# run KIND ROUND: one measurement; appends a line to $work/results.
run() {
  local kind=$1 round=$2 url
  broker_port=$(free_port)
  broker_pids=()
  broker_ca=
  case $kind in
    redis | rediss)
      # The plain port serves this script's own `INFO`; rediss nodes use the TLS port.
      local tls=() tls_port
      if [ "$kind" = rediss ]; then
        tls_files
        tls_port=$(free_port)
        tls=(--tls-port "$tls_port" --tls-cert-file "$work/leaf.pem" --tls-key-file "$work/leaf.key"
          --tls-ca-cert-file "$work/ca.pem" --tls-auth-clients no)
      fi
      redis-server --port "$broker_port" --bind 127.0.0.1 --save "" --appendonly no "${tls[@]}" \
        >"$work/redis.log" 2>&1 &
      broker_pids=($!)
      for _ in $(seq 100); do redis-cli -p "$broker_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
      url=redis://127.0.0.1:$broker_port
      if [ "$kind" = rediss ]; then
        url=rediss://127.0.0.1:$tls_port
        broker_ca=$work/ca.pem
      fi
      ;;
    nats | nats-tls)
      monitor_port=$(free_port)
      local conf=()
      url=nats://127.0.0.1:$broker_port
      if [ "$kind" = nats-tls ]; then
        tls_files
        printf 'tls {\n  cert_file: "%s"\n  key_file: "%s"\n}\n' \
          "$work/leaf.pem" "$work/leaf.key" >"$work/nats-tls.conf"
        conf=(-c "$work/nats-tls.conf")
        url=tls://127.0.0.1:$broker_port
        broker_ca=$work/ca.pem
      fi
      nats-server "${conf[@]}" -a 127.0.0.1 -p "$broker_port" -m "$monitor_port" \
        >"$work/nats.log" 2>&1 &
      broker_pids=($!)
      for _ in $(seq 100); do curl -sf "http://127.0.0.1:$monitor_port/varz" >/dev/null && break; sleep 0.05; done
      ;;
    cluster)
      start_cluster
      ;;
  esac
  pids+=("${broker_pids[@]}")
  node a "$url" 1
  local a_pid=$pid a_api=$api_port
  node b "$url" 2
  local b_pid=$pid b_ws=$ws_port
  read -r in0 out0 < <(broker_bytes "$kind")
  local nodes0 brokers0
  nodes0=$(cpu_ticks "$a_pid" "$b_pid")
  brokers0=$(cpu_ticks "${broker_pids[@]}")
  "$bin/loadgen" fanout --adapter gateway --url "ws://127.0.0.1:$b_ws" \
    --api-url "http://127.0.0.1:$a_api" --api-key "$key" --subscribers "$subscribers" \
    --publishers 1 --channels 1 --rate "$rate" -s "$size" --duration "$duration" \
    --quiet --json "$work/$kind-$round.json" >/dev/null
  read -r in1 out1 < <(broker_bytes "$kind")
  local nodes_cpu brokers_cpu
  nodes_cpu=$(($(cpu_ticks "$a_pid" "$b_pid") - nodes0))
  brokers_cpu=$(($(cpu_ticks "${broker_pids[@]}") - brokers0))
  python3 - "$work/$kind-$round.json" "$kind" "$round" "$in0" "$out0" "$in1" "$out1" \
    "$nodes_cpu" "$brokers_cpu" "$(getconf CLK_TCK)" >>"$work/results" <<'EOF'
import json, sys
path, kind, rnd, in0, out0, in1, out1, nodes, brokers, tck = sys.argv[1:]
r = json.load(open(path))["results"]
sent = max(r["all"]["sent"], 1)
lost = (r.get("delivery") or {}).get("lost", 0)
delivered = max(r["all"].get("received", 0), 1)
us = 1e6 / int(tck)
print(kind, rnd, round(r["receive_rate"]), r["latency"]["p99"] / 1e6, lost,
      (int(in1) - int(in0)) / sent, (int(out1) - int(out0)) / sent,
      int(nodes) * us / delivered, int(brokers) * us / sent)
EOF
  stop "$a_pid"
  stop "$b_pid"
  for pid in "${broker_pids[@]}"; do stop "$pid"; done
}

for round in $(seq "$rounds"); do
  # Alternate which kind goes first.
  order=("${kinds[@]}")
  if [ $((round % 2)) -eq 0 ]; then
    order=()
    for ((i = ${#kinds[@]} - 1; i >= 0; i--)); do order+=("${kinds[i]}"); done
  fi
  for kind in "${order[@]}"; do run "$kind" "$round"; done
done

python3 - "$work/results" "${kinds[@]}" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
kinds = sys.argv[2:]
print(f"{'broker':8} {'round':>5} {'deliveries/s':>12} {'p99 ms':>8} {'lost':>6} "
      f"{'in B/pub':>9} {'out B/pub':>9} {'node us/dlv':>11} {'broker us/pub':>13}")
for k, rnd, d, p99, lost, bi, bo, nc, bc in rows:
    print(f"{k:8} {rnd:>5} {int(d):>12} {float(p99):>8.2f} {lost:>6} "
          f"{float(bi):>9.1f} {float(bo):>9.1f} {float(nc):>11.2f} {float(bc):>13.2f}")
def median(kind, col):
    v = sorted(float(r[col]) for r in rows if r[0] == kind)
    return v[len(v) // 2]
base = kinds[0]
for other in kinds[1:]:
    print()
    print(f"{other}/{base} (medians over rounds):")
    for name, col in [("deliveries/s", 2), ("p99", 3), ("broker bytes in per publish", 5),
                      ("broker bytes out per publish", 6),
                      ("gateway CPU per delivery", 7), ("broker CPU per publish", 8)]:
        b, o = median(base, col), median(other, col)
        print(f"  {name:30} {o / b if b else float('nan'):.2f}  ({base} {b:.2f}, {other} {o:.2f})")
EOF
