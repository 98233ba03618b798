#!/usr/bin/env bash
# The long crash soak: the real release binary under the crash test's mixed
# load (SCIM deactivations and deletions, tier-group removals, owner loss and
# suspension, revocation by id and by RFC 7009) killed with SIGKILL at random
# moments, CYCLES times; after each restart nothing acknowledged is lost and
# nothing cut is active, the audit chain verifies, and no record is written
# twice. Prints the crash test's summary line. CI runs 30 cycles (the test
# command); RELIABILITY.md records a 1,000-cycle run.
# Usage: scripts/soak.sh [--cycles N] [--seed S]
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLES=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --cycles) CYCLES="$2"; shift 2 ;;
    --seed) export LOCKSTEP_CRASH_SEED="$2"; shift 2 ;;
    *) echo "usage: scripts/soak.sh [--cycles N] [--seed S]" >&2; exit 2 ;;
  esac
done
mkdir -p target
LOCKSTEP_CRASH_CYCLES="$CYCLES" cargo test --release --locked -p lockstep --test crash \
  acknowledged_revocations_survive_kill_9 -- --nocapture 2>&1 | tee target/soak.log | grep -E '^crash test|panicked|test result'
