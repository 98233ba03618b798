#!/usr/bin/env bash
# External judge for JWT access tokens: PyJWT (PyPI), pinned, in a venv under
# target/, verifies the tokens of a real `lockstep serve` against its published
# JWK Set, across a key rotation. Usage: scripts/conformance/jwt.sh [path/to/lockstep]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-target/debug/lockstep}"
PINS="PyJWT[crypto]==2.15.1 cryptography==50.0.2"
VENV=target/jwt-venv
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.pins" 2>/dev/null)" != "$PINS" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $PINS
  echo "$PINS" >"$VENV/.pins"
fi

DATA="$(mktemp -d "${TMPDIR:-/tmp}/lockstep-jwt-conformance.XXXXXX")"
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
"$VENV/bin/python" scripts/conformance/jwt_check.py "$URL" "$TOKEN" "$BIN" "$DATA/data"
