#!/usr/bin/env bash
# A soak: the gateway under a mixed load for a long time, watched from /proc.
#   ./scripts/soak.sh [DURATION]          DURATION like 90s, 2m, 1h (default 1h)
# It starts a gateway (the driver GATEWAY_DRIVER names, else the gateway's default) and, at once,
# chat rooms on /ws (every member checks loss, duplicates and order), a fan-out on /broadcast,
# churn on /echo with a connection storm every minute, slow readers (they must end with 4008,
# the slow-consumer close) and clients sending bad frames (each must get its RFC 6455 code). `loadgen watch` samples the gateway's RSS, descriptors, threads and CPU
# every SOAK_INTERVAL (10s) while the load runs, then fails the soak when memory keeps growing
# after the warm-up (a least-squares slope; tolerance below), when descriptors do not come back
# to their baseline once the load is gone, when a chat member missed, duplicated or reordered a
# message, or when a bad frame was not closed with its RFC 6455 code.
#
# Memory tolerance: the growth the fitted slope implies over the post-warm-up window may be at
# most max(SOAK_RSS_GROWTH_BYTES (4 MiB), SOAK_RSS_GROWTH_PCT (5) % of the RSS at the window's
# start). The warm-up is a quarter of the run, at most 5 minutes.
#
# Output in SOAK_OUT (default target/soak): soak.html (the time series and verdict), soak.json,
# and each load's own result (chat.json, fanout.json, churn.json with .html, misbehave.json).
# SOAK_PROFILE=debug uses debug binaries instead of release ones; SOAK_NO_BUILD=1 uses the
# binaries already in the target directory as they are (the test command has just built them). Exit code: 0 pass, 3 a check failed, other: could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The load itself, run by `loadgen watch` as its child (so the baseline is taken before it):
# every part at once, each for SOAK_LOAD_SECONDS; fails if any part fails.
if [ "${1:-}" = "__load" ]; then
  lg=$SOAK_LOADGEN
  secs=$SOAK_LOAD_SECONDS
  ws=ws://$SOAK_ADDR
  common=(--threads 1 --no-pin --quiet --warmup 1s --drain 3s)
  pids=()
  names=()
  start() {
    names+=("$1")
    shift
    "$@" >"$SOAK_OUT/${names[-1]}.log" 2>&1 &
    pids+=($!)
  }
  start chat "$lg" chat --adapter gateway --url "$ws" --users 200 --room-size 2-20 \
    --msg-rate 1 "${common[@]}" --duration "$((secs - 6))s" \
    --expect "loss=0,dup=0,out_of_order=0" --json "$SOAK_OUT/chat.json" --html "$SOAK_OUT/chat.html"
  start fanout "$lg" fanout --url "$ws/broadcast" --subscribers 200 --publishers 2 --rate 40 -s 128 \
    "${common[@]}" --duration "$((secs - 6))s" \
    --json "$SOAK_OUT/fanout.json" --html "$SOAK_OUT/fanout.html"
  start churn "$lg" churn --url "$ws/echo" -c 100 --rate 20 --stay 1s-10s \
    --storm 50%@20s --storm-every 60s "${common[@]}" --duration "$((secs - 6))s" \
    --json "$SOAK_OUT/churn.json" --html "$SOAK_OUT/churn.html"
  # Slow readers on a channel of their own, fed 16 KiB publishes so they fall behind by
  # megabytes (past the kernel's socket buffers) within seconds and meet the outbound limit.
  start misbehave "$lg" misbehave --slow-url "$ws/raw?channel=soak.slow" --slow 2 \
    --slow-read-rate 64 --slow-for 5s --feed-url "$ws/ws" \
    --feed-text '{"op":"publish","channel":"soak.slow","data":"{pad}"}' --feed-rate 200 \
    --bad-url "$ws/echo" --bad-rate 2 --duration "$((secs - 4))s" --json "$SOAK_OUT/misbehave.json"
  status=0
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      echo "soak: load part ${names[$i]} failed; its output:" >&2
      tail -n 30 "$SOAK_OUT/${names[$i]}.log" >&2
      status=1
    fi
  done
  exit "$status"
fi

duration=${1:-1h}
case "$duration" in
  *h) secs=$((${duration%h} * 3600)) ;;
  *m) secs=$((${duration%m} * 60)) ;;
  *s) secs=${duration%s} ;;
  *[!0-9]* | '') echo "soak.sh: bad duration '$duration' (e.g. 90s, 2m, 1h)" >&2; exit 2 ;;
  *) secs=$duration ;;
esac
if [ "$secs" -lt 60 ]; then
  echo "soak.sh: a soak needs at least 60s to fit a slope after its warm-up" >&2
  exit 2
fi
warmup=$((secs / 4 < 300 ? secs / 4 : 300))

profile=${SOAK_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-target}
if [ "${SOAK_NO_BUILD:-0}" = 1 ]; then
  : # the caller has just built them (the test command's nextest run)
elif [ "$profile" = release ]; then
  cargo build -q --release -p gateway -p loadgen
else
  cargo build -q -p gateway -p loadgen
fi
bin=$target_dir/$profile
out=${SOAK_OUT:-target/soak}
mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.html "$out"/*.log

# The gateway on free loopback ports; its `listening on` lines name them.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$bin/gateway" --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --threads 2 \
  --max-outbound-bytes 65536 >"$out/gateway.out" 2>"$out/gateway.log" &
gw=$!
trap 'kill "$gw" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q '^api listening on' "$out/gateway.out" 2>/dev/null && break
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$out/gateway.out" | head -n 1)
if [ -z "$addr" ]; then
  echo "soak.sh: the gateway did not start; its log:" >&2
  cat "$out/gateway.log" >&2
  exit 1
fi
echo "soak: gateway pid $gw on $addr (driver ${GATEWAY_DRIVER:-default}), $secs s, warm-up $warmup s"

status=0
SOAK_LOADGEN=$bin/loadgen SOAK_LOAD_SECONDS=$secs SOAK_ADDR=$addr SOAK_OUT=$out \
  "$bin/loadgen" watch --server-pid "$gw" --interval "${SOAK_INTERVAL:-10s}" \
  --warmup "${warmup}s" --settle 30s \
  --rss-growth-bytes "${SOAK_RSS_GROWTH_BYTES:-4194304}" --rss-growth-pct "${SOAK_RSS_GROWTH_PCT:-5}" \
  --load-report "$out/chat.json" --load-report "$out/fanout.json" --load-report "$out/churn.json" \
  --json "$out/soak.json" --html "$out/soak.html" -- "$0" __load || status=$?
if [ -f "$out/misbehave.json" ]; then
  echo "misbehave: $(tr -s ' \n' ' ' <"$out/misbehave.json")"
fi

# A graceful stop: SIGTERM, then the drain; a crash or a hang is a failure too.
kill -TERM "$gw"
if ! wait "$gw"; then
  echo "soak: the gateway did not exit cleanly; the end of its log:" >&2
  tail -n 30 "$out/gateway.log" >&2
  if [ "$status" -eq 0 ]; then status=1; fi
fi
trap - EXIT
echo "soak: report in $out/soak.html"
exit "$status"
