#!/usr/bin/env bash
# External judge for JWT access tokens: PyJWT (PyPI), pinned, in a venv under
# target/, verifies the tokens of a real `lockstep serve` against its published
# JWK Set, across a key rotation. Usage: scripts/conformance/jwt.sh [path/to/lockstep]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/conformance/common.sh
BIN="${1:-target/debug/lockstep}"
VENV=target/jwt-venv
venv "$VENV" "PyJWT[crypto]==2.15.1" cryptography==50.0.2
start_server "$BIN" jwt
"$VENV/bin/python" scripts/conformance/jwt_check.py "$URL" "$TOKEN" "$BIN" "$DATA/data"
