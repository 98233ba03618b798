#!/usr/bin/env bash
# External judge for SCIM: python-scim's scim2-tester (PyPI), pinned, in a venv
# under target/, against the real `lockstep serve` on a throw-away data
# directory on 127.0.0.1. Usage: scripts/conformance/scim.sh [path/to/lockstep]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-target/debug/lockstep}"
PINS="scim2-tester==0.5.2 scim2-client[httpx2]==0.13.2 scim2-models==0.12.3"
VENV=target/scim2-tester-venv
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.pins" 2>/dev/null)" != "$PINS" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $PINS
  echo "$PINS" >"$VENV/.pins"
fi

DATA="$(mktemp -d "${TMPDIR:-/tmp}/lockstep-scim-conformance.XXXXXX")"
TOKEN="conformance-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
LOG="$DATA/server.log"
LOCKSTEP_ADMIN_TOKEN="$TOKEN" LOCKSTEP_LOG=warn "$BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA/data" >"$LOG" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
URL=""
for _ in $(seq 1 100); do
  URL="$(sed -n 's/^lockstep: listening on //p' "$LOG" | head -1)"
  [ -n "$URL" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
[ -n "$URL" ] || { echo "server did not start" >&2; cat "$LOG" >&2; exit 1; }
"$VENV/bin/python" scripts/conformance/scim2_tester_check.py "$URL/scim/v2" "$TOKEN"
