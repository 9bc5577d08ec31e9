#!/usr/bin/env bash
# Cross-node fan-out next to local fan-out, side by side in one run, with the project's loadgen:
#   - local: SUBS subscribers of one channel on one gateway (--broker memory), publishes through
#     its own API;
#   - cross: the same subscribers spread over nodes 1 and 2, publishes through node 3's API, the
#     three nodes joined by one Redis (--broker redis://...).
# Figures per scenario: deliveries/s, p99 delivery latency from the intended publish time, server
# CPU per delivery (every gateway process of the scenario, user + system, over loadgen's measured
# window, sampled from /proc every 100 ms), and for cross the Redis bytes in and out per publish
# (INFO stats sampled alongside, over the same window, minus the idle rate of heartbeats and
# pings measured just before). Ratios are cross / local; the goal is CPU per delivery at most
# 1.2x.
#
#   cargo build --release -p gateway -p loadgen && bench/multi-node.sh
#
# Environment: BIN (target/release or $CARGO_TARGET_DIR/release), SUBS (10000), RATE
# (publishes/s, 10), SIZE (payload bytes, 128), WARMUP (2s), DURATION (5s), DRAIN (5s), ROUNDS
# (1), THREADS (shard threads per gateway, 1), KEEP (set: keep the work folder with loadgen's
# JSON and the samples). Needs redis-server and python3; everything stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${BIN:-${CARGO_TARGET_DIR:-target}/release}
subs=${SUBS:-10000}
rate=${RATE:-10}
size=${SIZE:-128}
warmup=${WARMUP:-2s}
duration=${DURATION:-5s}
rounds=${ROUNDS:-1}
threads=${THREADS:-1}
drain=${DRAIN:-5s}
key=bench-key

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then
    echo "kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --protected-mode no --maxclients 1000 >"$work/redis.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done

# start NAME ARGS...: a gateway; sets $ws, $api and $pid.
start() {
  local name=$1
  shift
  : >"$work/$name.out" # exists before the background process opens it, for the reads below
  "$bin/gateway" --threads "$threads" --log-level warn --api-key "$key" \
    --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    ws=$(sed -nE 's/^listening on (127\.0\.0\.1:[0-9]+)$/\1/p' "$work/$name.out")
    api=$(sed -nE 's/^api listening on (127\.0\.0\.1:[0-9]+)$/\1/p' "$work/$name.out")
    [ -n "$ws" ] && [ -n "$api" ] && return 0
    sleep 0.1
  done
  echo "the $name gateway did not start: $(cat "$work/$name.err")" >&2
  exit 1
}

# sample FILE PID...: every 100 ms, "unix_ns ticks redis_in redis_out" (ticks: user + system of
# all PIDs, from /proc; Redis's byte counters, from INFO, less the sampler's own INFO traffic)
# until killed. One process, no forks per sample, so it keeps time on a busy machine.
sample() {
  local file=$1
  shift
  exec python3 - "$file" "$redis_port" "$@" <<'PY'
import socket, sys, time
file, port, pids = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def ticks():
    t = 0
    for p in pids:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        t += int(f[11]) + int(f[12])
    return t
INFO = b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n"
own = [0, 0]  # what this sampler's own INFO requests and replies added to Redis's counters
def redis_bytes():
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(INFO)
        own[0] += len(INFO)
        data = b""
        while b"\r\n" not in data or len(data) < int(data[1:data.index(b"\r\n")]) + 5:
            data += s.recv(65536)
    stats = dict(l.split(":", 1) for l in data.decode().splitlines() if ":" in l)
    i = int(stats["total_net_input_bytes"]) - own[0]
    o = int(stats["total_net_output_bytes"]) - own[1]
    own[1] += len(data)  # counted by Redis from the next sample on
    return i, o
with open(file, "a") as out:
    while True:
        i, o = redis_bytes()
        out.write(f"{time.time_ns()} {ticks()} {i} {o}\n")
        out.flush()
        time.sleep(0.1)
PY
}

start local --broker memory
local_ws=$ws local_api=$api local_pid=$pid
for n in 1 2 3; do
  start "node$n" --broker "redis://127.0.0.1:$redis_port" --node-id "$n"
  eval "n${n}_ws=$ws n${n}_api=$api n${n}_pid=$pid"
done
sleep 2 # the nodes hear each other's heartbeats

fanout() {
  "$bin/loadgen" fanout --adapter gateway --subscribers "$subs" --rate "$rate" -s "$size" \
    --api-key "$key" --warmup "$warmup" --duration "$duration" --drain "$drain" \
    --connect-timeout 120s --quiet "$@"
}

for round in $(seq "$rounds"); do
  sample "$work/local-$round.samples" "$local_pid" &
  sampler=$!
  fanout --url "ws://$local_ws" --api-url "http://$local_api" --json "$work/local-$round.json"
  kill "$sampler"
  # Idle Redis traffic (heartbeats, pings) for the same length, to subtract.
  sample "$work/idle-$round.samples" "$n1_pid" &
  sampler=$!
  sleep "$(( ${duration%s} + 1 ))"
  kill "$sampler"
  sample "$work/cross-$round.samples" "$n1_pid" "$n2_pid" "$n3_pid" &
  sampler=$!
  fanout --url "ws://$n1_ws" --url "ws://$n2_ws" --api-url "http://$n3_api" \
    --json "$work/cross-$round.json"
  kill "$sampler"
done

python3 - "$work" "$rounds" "$(getconf CLK_TCK)" "$warmup" <<'EOF'
import json, statistics, sys
work, rounds, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
warmup_ns = float(sys.argv[4].rstrip("s")) * 1e9

def samples(name):
    try:
        lines = open(f"{work}/{name}.samples").read().splitlines()
    except FileNotFoundError:
        return []
    return [tuple(map(int, l.split())) for l in lines if len(l.split()) == 4]

def window(kind, r, res):
    """(ticks, redis bytes in, redis bytes out) over loadgen's measured window."""
    start = res["connect_phase_end_unix_ns"] + warmup_ns
    end = start + res["measured_s"] * 1e9
    inside = [s for s in samples(f"{kind}-{r}") if start <= s[0] <= end]
    if len(inside) < 2:
        return 0, 0, 0, 1
    a, b = inside[0], inside[-1]
    return b[1] - a[1], b[2] - a[2], b[3] - a[3], (b[0] - a[0]) / 1e9

def idle_rate(r):
    s = samples(f"idle-{r}")
    if len(s) < 2:
        print(f"round {r}: too few idle samples, idle traffic not subtracted", file=sys.stderr)
        return 0.0, 0.0
    a, b = s[0], s[-1]
    secs = (b[0] - a[0]) / 1e9
    return (b[2] - a[2]) / secs, (b[3] - a[3]) / secs

def figures(kind, r):
    res = json.load(open(f"{work}/{kind}-{r}.json"))["results"]
    ticks, rin, rout, secs = window(kind, r, res)
    deliveries = res["receive_rate"] * secs
    publishes = res["send_rate"] * secs
    d = res.get("delivery") or {}
    f = {
        "deliveries/s": res["receive_rate"],
        "p99 delivery latency (ms)": res["latency"]["p99"] / 1e6,
        "server CPU us per delivery": ticks / hz * 1e6 / max(deliveries, 1),
        "lost deliveries": d.get("lost", 0),
    }
    if kind == "cross":
        idle_in, idle_out = idle_rate(r)
        f["in"] = (rin - idle_in * secs) / max(publishes, 1)
        f["out"] = (rout - idle_out * secs) / max(publishes, 1)
    return f

def med(kind, name):
    return statistics.median(figures(kind, r)[name] for r in range(1, rounds + 1))

print(f"| figure (median of {rounds}) | one node | 2 nodes + publisher node | cross / local |")
print("| --- | ---: | ---: | ---: |")
for name in ["deliveries/s", "p99 delivery latency (ms)", "server CPU us per delivery",
             "lost deliveries"]:
    l, c = med("local", name), med("cross", name)
    ratio = f"{c / l:.2f}" if l else "-"
    print(f"| {name} | {l:,.2f} | {c:,.2f} | {ratio} |")

print(f"\nRedis bytes per publish (cross, measured window, idle traffic subtracted): "
      f"in {med('cross', 'in'):,.0f}, out {med('cross', 'out'):,.0f} (2 subscribed nodes)")
EOF
