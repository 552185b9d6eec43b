#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a fixed number of executions,
# 1,000,000 each unless the first argument says otherwise:
#   scripts/fuzz.sh            # 1,000,000 executions per target
#   scripts/fuzz.sh 10000      # a quick pass
#   scripts/fuzz.sh 1000000 record   # one target
# cargo-fuzz (crates.io) is installed into ~/.cache/event-gateway on first use;
# libFuzzer needs nightly features, which RUSTC_BOOTSTRAP=1 turns on for the
# stable toolchain. The inputs in fuzz/regressions/<target> seed each run. A
# crash is written to fuzz/artifacts/<target>/; copy it into
# fuzz/regressions/<target>/ and the normal test suite runs it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-1000000}"
only="${2:-}"
cache="${EVENT_GATEWAY_CACHE:-$HOME/.cache/event-gateway}"
fuzz_version="0.13.2"
export PATH="$cache/cargo-fuzz-$fuzz_version/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $fuzz_version into $cache (once)"
  cargo install cargo-fuzz --version "$fuzz_version" --locked --root "$cache/cargo-fuzz-$fuzz_version"
fi
scripts/system-packages.sh

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$cache/fuzz-target"
for target in $(cargo fuzz list); do
  if [ -n "$only" ] && [ "$target" != "$only" ]; then continue; fi
  corpus="$cache/fuzz-corpus/$target"
  mkdir -p "$corpus"
  echo "== $target: $runs executions"
  # No sanitizer: the targets are safe Rust; what is checked is that no input
  # panics or breaks an invariant the target asserts.
  log="$cache/fuzz-$target.log"
  status=0
  cargo fuzz run --sanitizer none --release "$target" "$corpus" "fuzz/regressions/$target" -- \
    -runs="$runs" -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log"
    echo "== $target failed (exit $status): the input is in fuzz/artifacts/$target/"
    exit "$status"
  fi
done
