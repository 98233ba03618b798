#!/usr/bin/env bash
# Every benchmark in BENCHMARKS.md, each beside its baseline, on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p lockstep -p lockstep-bench
exec ./target/release/lockstep-bench --lockstep target/release/lockstep "${@:-all}"
