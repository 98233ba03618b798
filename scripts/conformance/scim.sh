#!/usr/bin/env bash
# External judge for SCIM: python-scim's scim2-tester (PyPI), pinned, in a venv
# under target/, against the real `lockstep serve` on a throw-away data
# directory on 127.0.0.1. Usage: scripts/conformance/scim.sh [path/to/lockstep]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/conformance/common.sh
BIN="${1:-target/debug/lockstep}"
VENV=target/scim2-tester-venv
venv "$VENV" scim2-tester==0.5.2 "scim2-client[httpx2]==0.13.2" scim2-models==0.12.3
# scim2-tester 0.5.2 (scim2-models 0.12.3) refuses a ServiceProviderConfig
# with any attribute RFC 7643 does not define, so the agent drafts'
# `agentExtension` flag is turned off for it; `/Agents` is served and checked
# either way (the flag's default, on, is checked by the http tests).
CONFIG="$(mktemp "${TMPDIR:-/tmp}/lockstep-scim-conformance.XXXXXX.toml")"
printf '[scim]\nadvertise_agent_extension = false\n' >"$CONFIG"
start_server "$BIN" scim --config "$CONFIG"
rm -f "$CONFIG"
"$VENV/bin/python" scripts/conformance/scim2_tester_check.py "$URL/scim/v2" "$TOKEN"
