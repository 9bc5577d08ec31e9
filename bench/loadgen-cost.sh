#!/usr/bin/env bash
# loadgen's own CPU per message against the gateway's, for two loadgen binaries side by side in
# one run (a change to loadgen, before and after), in the shapes bench compare uses:
#   - echo-w1, echo-w16: 100 connections x 32 B, 1 and 16 messages in flight (closed loop);
#   - fanout-1k, fanout-10k: 1,000 and 10,000 subscribers of /broadcast, one publisher, 64 B,
#     at a fixed open-loop rate (200,000 deliveries/s by default), so both binaries do the same
#     work and only their cost differs.
# Each round starts a fresh gateway (one shard, epoll, pinned to SERVER_CPU), then runs every
# scenario with both binaries (pinned to CLIENT_CPU), alternating which goes first from one round
# to the next, so drift on a shared machine hits both alike. Figures are medians over the rounds:
# loadgen's CPU (user + system, whole process) per message received in the measured window, the
# gateway's over the same window and messages (`--server-pid`), and their ratio; both are
# computed here from fields every loadgen version writes (`client_cpu.cpu_s`,
# `window.received`, `server.cpu_s`), so an older binary can be the baseline. A second table
# splits the CPU of binaries that report it (`system_s`) into user space and the kernel.
#
#   cargo build --release -p gateway -p loadgen
#   cp $CARGO_TARGET_DIR/release/loadgen /tmp/loadgen-old    # at the older commit
#   OLD=/tmp/loadgen-old bench/loadgen-cost.sh
#
# With FLOOR=1 (and `cargo build --release -p bench`) a third client joins the rotation:
# `bench floor-client`, the cheapest client this host can run (no latencies, no per-message
# state, prebuilt frames; see bench/src/floor.rs). Its ratio is the floor of loadgen's on this
# host: on loopback each side's system calls also run the other side's TCP work, so no client
# gets below it, however little its own code does. OLD may then be left unset (only the new
# loadgen and the floor run).
#
# Environment: OLD, NEW ($bin/loadgen), FLOOR, ROUNDS (3), WARMUP (1s), DURATION (3s),
# DELIVERIES (200000 deliveries/s in fan-out), SCENARIOS ("echo-w1 echo-w16 fanout-1k
# fanout-10k"), SERVER_CPU (1), CLIENT_CPU (0), KEEP (print the gateway's stderr at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CARGO_TARGET_DIR:-target}/release
old=${OLD:-}
new=${NEW:-$bin/loadgen}
floor=${FLOOR:-}
[ -n "$old" ] || [ -n "$floor" ] || { echo "set OLD to the baseline loadgen binary, or FLOOR=1" >&2; exit 1; }
clients=""
[ -n "$old" ] && clients="old"
clients="$clients new"
[ -n "$floor" ] && clients="$clients floor"
rounds=${ROUNDS:-3}
warmup=${WARMUP:-1s}
duration=${DURATION:-3s}
deliveries=${DELIVERIES:-200000}
scenarios=${SCENARIOS:-echo-w1 echo-w16 fanout-1k fanout-10k}
server_cpu=${SERVER_CPU:-1}
client_cpu=${CLIENT_CPU:-0}

work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && cat "$work"/*.err >&2
  rm -rf "$work"
}
trap cleanup EXIT

# A fresh one-shard gateway on the server core; sets $port and $pid.
start() {
  taskset -c "$server_cpu" "$bin/gateway" --threads 1 --driver epoll --log-level warn \
    --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 >"$work/gateway.out" 2>>"$work/gateway.err" &
  pid=$!
  for _ in $(seq 100); do
    port=$(sed -nE 's/^listening on 127\.0\.0\.1:([0-9]+)$/\1/p' "$work/gateway.out" 2>/dev/null || true)
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "the gateway did not start: $(cat "$work/gateway.err")" >&2
  exit 1
}

# run CLIENT SCENARIO OUT: one measured run (CLIENT: old, new or floor).
run() {
  local which=$1 scenario=$2 out=$3 args lg
  case $which in
    old) lg=("$old") ;;
    new) lg=("$new") ;;
    floor) lg=("$bin/bench" floor-client) ;;
  esac
  case $scenario in
    echo-w1) args=(echo --url "ws://127.0.0.1:$port/echo" -c 100 -w 1 -s 32) ;;
    echo-w16) args=(echo --url "ws://127.0.0.1:$port/echo" -c 100 -w 16 -s 32) ;;
    fanout-1k | fanout-10k)
      local subs=${scenario#fanout-}
      subs=${subs%k}000
      args=(fanout --url "ws://127.0.0.1:$port/broadcast" --adapter pub --subscribers "$subs"
        --publishers 1 --rate $((deliveries / subs)) -s 64 --connect-timeout 60s) ;;
    *) echo "unknown scenario $scenario" >&2; exit 1 ;;
  esac
  taskset -c "$client_cpu" "${lg[@]}" "${args[@]}" --threads 1 --no-pin --quiet --warmup "$warmup" \
    --duration "$duration" --server-pid "$pid" --json "$out" >/dev/null
}

for round in $(seq "$rounds"); do
  start
  # Alternate the order from one round to the next.
  if [ $((round % 2)) = 1 ]; then order=$clients; else order=$(echo $clients | tr ' ' '\n' | tac | tr '\n' ' '); fi
  for scenario in $scenarios; do
    for which in $order; do
      run "$which" "$scenario" "$work/$scenario-$which-$round.json"
    done
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
done

python3 - "$work" "$rounds" "$scenarios" "$clients" <<'EOF'
import json, statistics, sys
work, rounds, scenarios = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
clients = sys.argv[4].split()
def fig(scenario, which, r):
    res = json.load(open(f"{work}/{scenario}-{which}-{r}.json"))["results"]
    msgs = res["window"]["received"]
    client, server = res["client_cpu"]["cpu_s"], res["server"]["cpu_s"]
    return {
        "rate": res["receive_rate"],
        "client": client * 1e6 / msgs,
        "server": server * 1e6 / msgs,
        "ratio": client / server,
        "busiest": res["client_cpu"]["busiest_thread"],
    }
def med(scenario, which, key):
    return statistics.median(fig(scenario, which, r)[key] for r in range(1, rounds + 1))
print(f"medians of {rounds} rounds; CPU in us per message received; ratio = client CPU / gateway CPU")
if "old" in clients:
    print(f"| scenario | msgs/s old | msgs/s new | loadgen old | loadgen new | new/old "
          f"| gateway old | gateway new | ratio old | ratio new |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in scenarios:
        o = {k: med(s, "old", k) for k in ("rate", "client", "server", "ratio")}
        n = {k: med(s, "new", k) for k in ("rate", "client", "server", "ratio")}
        print(f"| {s} | {o['rate']:,.0f} | {n['rate']:,.0f} | {o['client']:.3f} | {n['client']:.3f} "
              f"| {n['client'] / o['client']:.2f} | {o['server']:.3f} | {n['server']:.3f} "
              f"| {o['ratio']:.2f} | {n['ratio']:.2f} |")
if "floor" in clients:
    # Each round's loadgen ratio over the floor ratio of the same round (same gateway, minutes
    # apart): how far loadgen is above the cheapest client, with drift between rounds cancelled.
    print()
    print("| scenario | msgs/s loadgen | msgs/s floor | loadgen CPU | floor CPU | gateway CPU (loadgen run) "
          "| gateway CPU (floor run) | ratio loadgen | ratio floor | loadgen / floor |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in scenarios:
        n = {k: med(s, "new", k) for k in ("rate", "client", "server", "ratio")}
        f = {k: med(s, "floor", k) for k in ("rate", "client", "server", "ratio")}
        over = statistics.median(fig(s, "new", r)["ratio"] / fig(s, "floor", r)["ratio"]
                                 for r in range(1, rounds + 1))
        print(f"| {s} | {n['rate']:,.0f} | {f['rate']:,.0f} | {n['client']:.3f} | {f['client']:.3f} "
              f"| {n['server']:.3f} | {f['server']:.3f} | {n['ratio']:.2f} | {f['ratio']:.2f} "
              f"| {over:.2f} |")

# Where the CPU goes, from binaries that report the kernel's part (`system_s`): on loopback the
# kernel's TCP path costs about as much on both ends, so the user-space ratio is the one a
# change to loadgen's own code moves.
def split(scenario, which, r):
    res = json.load(open(f"{work}/{scenario}-{which}-{r}.json"))["results"]
    c, s = res["client_cpu"], res["server"]
    if "system_s" not in c or "system_s" not in s:
        return None
    msgs = res["window"]["received"]
    return {
        "client_user": (c["cpu_s"] - c["system_s"]) * 1e6 / msgs,
        "server_user": (s["cpu_s"] - s["system_s"]) * 1e6 / msgs,
        "client_kernel": c["system_s"] / c["cpu_s"],
        "server_kernel": s["system_s"] / s["cpu_s"],
    }
for which in clients:
    if any(split(s, which, 1) is None for s in scenarios):
        continue
    print()
    print(f"{which}: user-space CPU in us per message, and the kernel's share of each process's CPU")
    print("| scenario | client user | gateway user | user ratio | client in kernel | gateway in kernel |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for s in scenarios:
        figs = [split(s, which, r) for r in range(1, rounds + 1)]
        m = {k: statistics.median(f[k] for f in figs) for k in figs[0]}
        print(f"| {s} | {m['client_user']:.3f} | {m['server_user']:.3f} "
              f"| {m['client_user'] / m['server_user']:.2f} | {m['client_kernel']:.0%} "
              f"| {m['server_kernel']:.0%} |")
EOF
