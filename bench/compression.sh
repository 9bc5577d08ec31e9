#!/usr/bin/env bash
# permessage-deflate measured with loadgen, side by side in one run: echo and fan-out of chat-like
# text (200 B and 2 KiB) with compression negotiated (--deflate) and not, against one release
# gateway; prints bytes on the wire per message (the gateway's own byte counters) and gateway CPU
# per message (from /proc). Usage: bench/compression.sh [SECONDS]   (release build first:
# cargo build --release -p gateway -p loadgen)
set -euo pipefail
secs=${1:-5}
target=${CARGO_TARGET_DIR:-target}/release
key=bench-compression-key
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
api=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$target/gateway" --listen "127.0.0.1:$port" --api-listen "127.0.0.1:$api" --api-key "$key" \
  --threads 1 --log-level warn &
gw=$!
trap 'kill $gw 2>/dev/null; wait $gw 2>/dev/null' EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$api/healthz" >/dev/null && break; sleep 0.1; done
out=$(mktemp -d)
metrics() { curl -fs "http://127.0.0.1:$api/metrics" > "$1"; }
run() { # name, loadgen args...
  local name=$1; shift
  metrics "$out/$name.before"
  "$target/loadgen" "$@" --threads 1 --warmup 1s --duration "${secs}s" --drain 1s --quiet \
    --server-pid "$gw" --json "$out/$name.json" >/dev/null
  metrics "$out/$name.after"
  python3 - "$out/$name" "$name" <<'PY'
import json, sys
base, name = sys.argv[1], sys.argv[2]
def read(path):
    m = {}
    for line in open(path):
        if line.startswith("gateway_") and " " in line:
            k, v = line.rsplit(" ", 1)
            m[k] = m.get(k, 0) + float(v)
    return m
a, b = read(base + ".before"), read(base + ".after")
d = {k: b[k] - a.get(k, 0) for k in b}
r = json.load(open(base + ".json"))["results"]
# Whole-run byte counters (handshakes included) over whole-run message counters.
out_per = d["gateway_bytes_out_total"] / max(d["gateway_messages_out_total"], 1)
in_per = d["gateway_bytes_in_total"] / max(d["gateway_messages_in_total"], 1)
print(f'{name:<18} {int(d["gateway_messages_out_total"]):>8} msgs out {out_per:>7.1f} B/msg out'
      f' {in_per:>7.1f} B/msg in {r["server"]["cpu_us_per_message"]:>6.2f} us CPU/msg delivered')
PY
}
for size in 200 2048; do
  for mode in off on; do
    flag=(); [ "$mode" = on ] && flag=(--deflate)
    run "echo-$size-$mode" echo "${flag[@]}" --url "ws://127.0.0.1:$port/echo" -c 50 \
      --rate 5000 -s "$size" --text
    run "fanout-$size-$mode" fanout "${flag[@]}" --adapter pub --url "ws://127.0.0.1:$port/broadcast" \
      --subscribers 200 --publishers 1 --rate 100 -s "$size"
  done
done
