#!/usr/bin/env bash
# Rebuilds a crate's committed fuzz seed corpus, <crate>/fuzz/seeds/<target>/:
#   ./scripts/fuzz-seeds.sh frame-simd|gateway [seconds of fuzzing per target, default 90]
# For each fuzz target it writes the generated seeds (<crate>/fuzz/src/seeds.rs, through the
# crate's `fuzz_seeds` example), fuzzes from them and the committed seeds, then keeps a small set
# of inputs that reaches the same code: frame-simd's kernels by edges without hit counts (with
# them every loop count is new coverage and hundreds of near-copies stay), the gateway's parsers
# by libFuzzer's greedy set cover. A kept seed that came from the generator keeps its descriptive
# name; inputs the fuzzer found are named by their SHA-1, as libFuzzer names them.
set -euo pipefail
crate=${1:?usage: fuzz-seeds.sh frame-simd|gateway [seconds]}
case "$crate" in
  frame-simd) cmin_flags=-use_counters=0 ;;
  gateway) cmin_flags=-set_cover_merge=1 ;;
  *) echo "fuzz-seeds.sh: no fuzz crate named $crate" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../$crate"

secs=${2:-90}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cargo run -q -p "$crate" --example fuzz_seeds -- "$scratch/generated"
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
  cargo +nightly fuzz cmin "$target" "$corpus" -- "$cmin_flags" >"$log" 2>&1 \
    || { tail -n 40 "$log"; exit 1; }

  # The generator's names, by content.
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
