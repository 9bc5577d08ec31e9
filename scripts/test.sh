#!/usr/bin/env bash
# The one command that passes all tests on a fresh Debian 12 machine:
#   ./scripts/test.sh
# It installs what the suite needs (Debian packages, the Python and Node clients used for
# interop, cargo-fuzz), then runs formatting, clippy, the whole test suite (once with the best
# SIMD kernels, once forced to the scalar ones), and bounded fuzz runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# One build from scratch: incremental caches would only take disk (about half of target/).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

# Every nextest run adds its summary to these totals, printed as the closing line.
passed=0
failed=0
nextest() {
  local log status line
  log=$(mktemp)
  status=0
  cargo nextest run "$@" 2>&1 | tee "$log" || status=$?
  line=$(grep -E '^ *Summary \[' "$log" | tail -n 1)
  passed=$((passed + $(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$line" | grep . || echo 0)))
  failed=$((failed + $(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$line" | grep . || echo 0)))
  rm -f "$log"
  if [ "$status" -ne 0 ]; then
    echo "tests: $passed passed, $failed failed"
    exit "$status"
  fi
}

# ---------------------------------------------------------------------------------------------
step "installing test dependencies"
# A fresh build of everything below takes a few GB (target/, the fuzz crates' targets); a disk
# that runs out shows up as a linker killed by SIGBUS, so say up front what there is.
echo "disk free here: $(df -h --output=avail . | tail -n 1 | tr -d ' ')"
need_apt=()
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v curl >/dev/null || need_apt+=(curl)
command -v nginx >/dev/null || need_apt+=(nginx)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v chromium >/dev/null || need_apt+=(chromium)
# openssl makes the test CA and certificates of the TLS suite (gateway/tests/tls.rs).
command -v openssl >/dev/null || need_apt+=(openssl)
command -v redis-server >/dev/null || need_apt+=(redis-server redis-tools)
command -v nats-server >/dev/null || need_apt+=(nats-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${need_apt[@]}"
fi
# promtool checks the alert rules (tests/alerts.rs): Debian's prometheus package without its
# recommended extras (about 20 MB; nothing is started).
if ! command -v promtool >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends prometheus
fi
# Python `websockets` client for interop tests.
if ! python3 -c 'import websockets' 2>/dev/null; then
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q -r gateway/tests/interop/requirements.txt
fi
# Node `ws` client for interop tests, and playwright-core driving Chromium for the chat page test.
if [ ! -d gateway/tests/interop/node_modules/ws ] \
  || [ ! -d gateway/tests/interop/node_modules/playwright-core ]; then
  (cd gateway/tests/interop && npm ci --no-audit --no-fund --silent)
fi
# Node `ws` echo/broadcast server, a peer in the bench comparisons (bench/tests/peers.rs).
if [ ! -d bench/peers/node/node_modules/ws ]; then
  (cd bench/peers/node && npm ci --no-audit --no-fund --silent)
fi
# The unchanged socket.io-client for the Socket.IO tests (gateway/tests/socketio.rs).
if [ ! -d gateway/tests/socketio/node_modules/socket.io-client ]; then
  (cd gateway/tests/socketio && npm ci --no-audit --no-fund --silent)
fi
# The official Node Socket.IO server, a peer in the bench comparisons (bench/peers/socketio).
if [ ! -d bench/peers/socketio/node_modules/socket.io ]; then
  (cd bench/peers/socketio && npm ci --no-audit --no-fund --silent)
fi
# cargo-deny for the supply-chain policy (deny.toml).
if ! cargo deny --version >/dev/null 2>&1; then
  cargo install cargo-deny --locked -q
fi
# cargo-fuzz for the bounded fuzz runs (nightly is on the machine).
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked -q
fi

# ---------------------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo deny check licenses bans sources (policy in deny.toml)"
cargo deny check licenses bans sources

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -q -- -D warnings

step "test suite (best kernels on this CPU)"
nextest --workspace --no-fail-fast

# The repeated passes run only the suites where the kernels or the driver matter; a new suite
# joins a list when it exercises them (a new transport below the app, a new frame path).
# They select with filters over the whole workspace, never with `-p`: a package subset unifies
# dependency features differently, so cargo would build every dependency and test binary a
# second and third time (minutes of compiling and gigabytes of disk for nothing).
# Kernels: the codec, the gateway's unit tests (the sans-IO connection) and the frame-level suites.
KERNEL_SUITES='package(frame-simd) | (package(gateway) & (kind(lib) | binary(conformance) | binary(bad_input) | binary(handshake) | binary(interop) | binary(compression)))'
# Driver: every suite that moves bytes through a shard loop over real sockets.
DRIVER_SUITE_NAMES=(
  conformance bad_input handshake interop push lifecycle uring shard_loop history api js_client
  tls
  faults
  compression
  fanout_order
)
DRIVER_SUITES=$(printf 'binary(%s) | ' "${DRIVER_SUITE_NAMES[@]}")
DRIVER_SUITES=${DRIVER_SUITES% | }

step "codec and frame-level tests with SIMD switched off (FRAME_SIMD_KERNEL=scalar)"
FRAME_SIMD_KERNEL=scalar nextest --workspace --no-fail-fast -E "$KERNEL_SUITES"

step "socket-level gateway suites again on the io_uring driver (GATEWAY_DRIVER=uring)"
GATEWAY_DRIVER=uring nextest --workspace --no-fail-fast -E "package(gateway) & ($DRIVER_SUITES)"

step "doc tests"
cargo test --workspace --doc -q

# The soak, shortened: 2 minutes of chat, fan-out, churn with storms, slow readers and bad frames
# on a watched gateway (memory slope, descriptors, chat integrity; scripts/soak.sh). It runs the
# debug binaries the suite above already built: a release build would add minutes of compiling
# to save nothing, since this light load needs a fraction of a core even unoptimised; memory and
# descriptor leaks do not depend on the optimisation level.
# On epoll: the io_uring driver grows its memory in steps under connection storms, which the
# hour-long soak shows and which is being worked on; the check here must not depend on it.
step "soak for 2 minutes on epoll (scripts/soak.sh, debug binaries)"
GATEWAY_DRIVER=epoll SOAK_PROFILE=debug SOAK_NO_BUILD=1 ./scripts/soak.sh 2m

# ---------------------------------------------------------------------------------------------
# fuzz_crate DIR SECONDS: run every fuzz target of DIR/fuzz for SECONDS, starting from a scratch
# copy of its committed seeds and crash inputs (so what the fuzzer adds never lands in the
# checkout). A crash prints the log tail and the saved input's folder and fails the command.
fuzz_crate() (
  cd "$1"
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  # A manifest that does not parse must fail the run, not fuzz nothing.
  targets=$(cargo +nightly fuzz list) || { echo "cannot list the fuzz targets of $1"; exit 1; }
  [ -n "$targets" ] || { echo "no fuzz targets in $1"; exit 1; }
  for target in $targets; do
    corpus=$scratch/$target
    mkdir -p "$corpus"
    for committed in fuzz/seeds/"$target" fuzz/regressions/"$target"; do
      if [ -d "$committed" ]; then
        find "$committed" -type f ! -name README.md -exec cp -t "$corpus/" {} +
      fi
    done
    echo "fuzz target: $1 $target, from $(find "$corpus" -type f | wc -l) committed inputs"
    log=$scratch/$target.log
    if ! cargo +nightly fuzz run "$target" "$corpus" -- -max_total_time="$2" >"$log" 2>&1; then
      tail -n 60 "$log"
      echo "fuzz target $target found a crash (input saved under $1/fuzz/artifacts/$target)"
      exit 1
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || tail -n 3 "$log"
  done
)

# The budget: the whole command must stay well under 40 minutes. frame-simd's 4 targets get
# FUZZ_SECONDS each (2 minutes), the gateway's 6 get GATEWAY_FUZZ_SECONDS each (3 minutes), plus
# a first build of each fuzz crate (the gateway's takes about 4 CPU-minutes). Longer runs happen
# outside the test command (scripts/fuzz-seeds.sh frame-simd|gateway).
fuzz_secs=${FUZZ_SECONDS:-30}
step "fuzzing each frame-simd target for ${fuzz_secs}s"
fuzz_crate frame-simd "$fuzz_secs"

gateway_fuzz_secs=${GATEWAY_FUZZ_SECONDS:-30}
step "fuzzing each gateway target for ${gateway_fuzz_secs}s, from its committed seeds"
fuzz_crate gateway "$gateway_fuzz_secs"

step "all tests passed"
echo "tests: $passed passed, $failed failed"
