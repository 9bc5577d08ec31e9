#!/usr/bin/env bash
# Gateway overhead on backend RPCs, side by side in one run: one loadgen `rpc` run through the
# gateway (ws://.../ws, {"op":"rpc"} -> --hook-rpc -> backend) and one straight at the same
# backend (http://.../rpc, the body the gateway would send), at the same open-loop rate, at the
# same time, against one backend process. Latency is from each call's intended send time.
#
#   ./bench/hooks/rpc-overhead.sh [rate per side, default 500] [seconds, default 10]
#
# Needs release builds of gateway and loadgen (built here) and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=${1:-500}
secs=${2:-10}
cargo build -q --release -p gateway -p loadgen
bin=${CARGO_TARGET_DIR:-target}/release
out=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$out"; }
trap cleanup EXIT

python3 -u bench/hooks/rpc_backend.py >"$out/backend.out" &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$out/backend.out" && break; sleep 0.1; done
port=$(awk '/listening on/ {print $3}' "$out/backend.out")

"$bin/gateway" --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --threads 1 --log-level warn \
  --hook-secret bench --hook-rpc "http://127.0.0.1:$port/rpc" >"$out/gateway.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 50); do grep -q '^listening on' "$out/gateway.out" && break; sleep 0.1; done
gw=$(awk '/^listening on/ {print $3; exit}' "$out/gateway.out")

common=(--rate "$rate" -c 20 -s 64 --threads 1 --warmup 2s --duration "${secs}s" --quiet)
"$bin/loadgen" rpc --url "ws://$gw/ws" "${common[@]}" --json "$out/gateway.json" &
via=$!
"$bin/loadgen" rpc --url "http://127.0.0.1:$port/rpc" "${common[@]}" --json "$out/direct.json" &
direct=$!
wait "$via" "$direct"

python3 - "$out/gateway.json" "$out/direct.json" <<'PY'
import json, sys
def lat(path):
    r = json.load(open(path))
    res = r["results"] if "results" in r else r
    l = res["latency"] if "latency" in res else res["all"]["latency"]
    return res, l
rows = []
for name, path in (("through the gateway", sys.argv[1]), ("direct to the backend", sys.argv[2])):
    res, l = lat(path)
    rows.append((name, l))
keys = [k for k in ("p50", "p90", "p99", "p999", "max") if k in rows[0][1]]
print("%-24s" % "" + "".join("%12s" % k for k in keys))
for name, l in rows:
    print("%-24s" % name + "".join("%12s" % ("%.3f ms" % (l[k] / 1e6)) for k in keys))
g, d = rows[0][1], rows[1][1]
print("%-24s" % "ratio" + "".join("%12s" % ("%.2fx" % (g[k] / d[k] if d[k] else float("nan"))) for k in keys))
PY
