#!/usr/bin/env bash
# External judge for Shared Signals (OpenID SSF 1.0): a push receiver in
# Python (standard library) on 127.0.0.1 and PyJWT (PyPI), pinned, in a venv
# under target/, verify every Security Event Token a real `lockstep serve`
# pushes (RFC 8935) or is polled for (RFC 8936) against the JWK Set its SSF
# discovery document names. Usage: scripts/conformance/ssf.sh [path/to/lockstep]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/conformance/common.sh
BIN="${1:-target/debug/lockstep}"
VENV=target/ssf-venv
venv "$VENV" "PyJWT[crypto]==2.15.1" cryptography==50.0.2
start_server "$BIN" ssf
"$VENV/bin/python" scripts/conformance/ssf_check.py "$URL" "$TOKEN"
