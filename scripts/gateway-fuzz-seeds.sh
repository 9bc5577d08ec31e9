#!/usr/bin/env bash
# Rebuilds the committed fuzz seed corpus, gateway/fuzz/seeds/<target>/:
#   ./scripts/gateway-fuzz-seeds.sh [seconds of fuzzing per target, default 90]
# For each fuzz target it writes the generated seeds (gateway/fuzz/src/seeds.rs), fuzzes from
# them and the committed seeds, then keeps a small set of inputs that covers the same code
# (`cargo fuzz cmin` with libFuzzer's greedy set cover). A kept seed that came from the generator
# keeps its name; inputs the fuzzer found are named by their SHA-1, as libFuzzer names them.
set -euo pipefail
cd "$(dirname "$0")/../gateway"

secs=${1:-90}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cargo run -q -p gateway --example fuzz_seeds -- "$scratch/generated"
for target in $(cargo +nightly fuzz list); do
  generated=$scratch/generated/$target
  corpus=$scratch/corpus/$target
  mkdir -p "$corpus"
  cp "$generated"/* "$corpus/"
  if [ -d "fuzz/seeds/$target" ]; then
    cp "fuzz/seeds/$target"/* "$corpus/"
  fi
  echo "fuzz target: $target, from $(find "$corpus" -type f | wc -l) inputs"
  log=$scratch/$target.log
  cargo +nightly fuzz run "$target" "$corpus" -- -max_total_time="$secs" >"$log" 2>&1 \
    || { tail -n 40 "$log"; exit 1; }
  grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || tail -n 3 "$log"
  cargo +nightly fuzz cmin "$target" "$corpus" -- -set_cover_merge=1 >"$log" 2>&1 || { tail -n 40 "$log"; exit 1; }

  declare -A names=()
  for seed in "$generated"/*; do
    names[$(sha1sum <"$seed" | cut -c1-40)]=$(basename "$seed")
  done
  rm -rf "fuzz/seeds/$target"
  mkdir -p "fuzz/seeds/$target"
  for input in "$corpus"/*; do
    hash=$(sha1sum <"$input" | cut -c1-40)
    cp "$input" "fuzz/seeds/$target/${names[$hash]:-$hash}"
  done
  unset names
  echo "fuzz/seeds/$target: $(find "fuzz/seeds/$target" -type f | wc -l) inputs," \
    "$(cat "fuzz/seeds/$target"/* | wc -c) bytes"
done
