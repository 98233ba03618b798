#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it. Works from a fresh clone:
# installs what the tests need, starts it on loopback itself.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it started (minutes:seconds since the start), so a
# slow CI run shows where its time went.
started=$SECONDS
step() { local t=$((SECONDS - started)); printf '\n== [%d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*"; }

# Real directory servers for the source tests: OpenLDAP (slapd with the
# syncprov overlay, and the ldap-utils tools) and a Samba Active Directory
# domain controller, from Debian's packages. The tests start their own
# throw-away instances on loopback; apt must not start the system ones
# (a system slapd or samba-ad-dc would hold ports the tests need), so a
# policy-rc.d refuses service starts while installing.
packages=(slapd ldap-utils samba samba-ad-dc samba-ad-provision ldb-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing ${missing[*]} (Debian packages)"
  as_root=""; [ "$(id -u)" -eq 0 ] || as_root="sudo"
  policy=/usr/sbin/policy-rc.d
  created_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $as_root tee "$policy" >/dev/null
    $as_root chmod +x "$policy"
    created_policy=1
  fi
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$created_policy" ] || $as_root rm -f "$policy"
fi

# Incremental compilation state is useless on a one-shot clean build and
# costs gigabytes; say how much disk there is, since running out of it is
# the one failure a clean clone cannot explain by itself.
export CARGO_INCREMENTAL=0
step "disk: $(df -h . | awk 'NR==2 {print $4 " free of " $2}')"

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests (unit, property, conformance, end-to-end, kill -9 crash test)"
mkdir -p target
set +e
LOCKSTEP_CRASH_CYCLES="${LOCKSTEP_CRASH_CYCLES:-30}" cargo test --workspace --locked --no-fail-fast -- --nocapture \
  >target/test-output.log 2>&1
status=$?
set -e
grep -E '^(test |test result|crash test)|panicked|FAILED' target/test-output.log | grep -v ' 0 passed; 0 failed' || true
if [ "$status" -ne 0 ]; then
  echo "cargo test failed (exit $status); the end of target/test-output.log:" >&2
  tail -n 80 target/test-output.log >&2
  exit "$status"
fi

step "fuzzing: every cargo-fuzz target for a short bounded time (scripts/fuzz.sh; longer runs in RELIABILITY.md)"
fuzz_out=$(scripts/fuzz.sh "${LOCKSTEP_FUZZ_SECONDS:-15}" 2>&1) || { echo "$fuzz_out"; exit 1; }
echo "$fuzz_out" | grep '^fuzz '

step "SCIM conformance: scim2-tester (PyPI) against the real server"
scim_out=$(scripts/conformance/scim.sh target/debug/lockstep 2>&1) || { echo "$scim_out"; exit 1; }
echo "$scim_out"

step "JWT conformance: PyJWT (PyPI) verifies access tokens against the published JWK Set, across a key rotation"
jwt_out=$(scripts/conformance/jwt.sh target/debug/lockstep 2>&1) || { echo "$jwt_out"; exit 1; }
echo "$jwt_out" | tail -1

step "SSF conformance: a Python push receiver and PyJWT (PyPI) verify every Security Event Token, pushed and polled"
ssf_out=$(scripts/conformance/ssf.sh target/debug/lockstep 2>&1) || { echo "$ssf_out"; exit 1; }
echo "$ssf_out" | tail -1

step "demo (the README walk-through, against a real server)"
cargo run --locked --quiet -p lockstep -- demo

step "summary"
scim_line=$(echo "$scim_out" | tail -1)
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/test-output.log | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.log | awk '{s+=$1} END {print s+0}')
echo
echo "$scim_line"
echo "$jwt_out" | tail -1
echo "$ssf_out" | tail -1
echo "lockstep tests: ${passed} passed, ${failed} failed"
echo "$fuzz_out" | grep '^fuzz ' | awk '{n+=$3} END {printf "fuzzing: %d targets, %d executions, 0 crashes\n", NR, n}'
