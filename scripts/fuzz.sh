#!/usr/bin/env bash
# Fuzz every target for SECONDS each (default 60) with libFuzzer through
# cargo-fuzz on the stable toolchain (-s none: no sanitizer, coverage only).
# The seed corpus in fuzz/seeds/<target> is read, never written; what the
# fuzzer learns goes to target/fuzz-corpus/<target>. Prints, per target, the
# executions and whether it crashed; exits non-zero on any crash (the input
# is kept under fuzz/artifacts/<target>/).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"
shift || true
CARGO_FUZZ_VERSION=0.13.1
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(cd fuzz && cargo fuzz list)
fi
(cd fuzz && cargo fuzz build -s none)
failed=0
for t in "${TARGETS[@]}"; do
  work="target/fuzz-corpus/$t"
  mkdir -p "$work"
  log="target/fuzz-$t.log"
  set +e
  (cd fuzz && cargo fuzz run -s none "$t" "../$work" "seeds/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1
  status=$?
  set -e
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  corpus=$(ls "$work" | wc -l)
  if [ "$status" -ne 0 ]; then
    echo "fuzz $t: CRASH after ${runs:-?} executions (see $log and fuzz/artifacts/$t)"
    tail -n 30 "$log"
    failed=1
  else
    echo "fuzz $t: ${runs:-0} executions in ${SECONDS_PER_TARGET}s, 0 crashes, corpus $corpus"
  fi
done
exit "$failed"
