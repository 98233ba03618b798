#!/usr/bin/env bash
# Every benchmark in BENCHMARKS.md, each beside its baseline, on this machine.
#
# The token authority's peer is django-oauth-toolkit under gunicorn, installed
# from PyPI into target/dot-venv (pinned versions) on first use, the way the
# conformance judges install theirs.
#
# `sources` (and so `all`) starts throw-away slapd servers: slapd and ldap-utils
# must be installed (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p lockstep -p lockstep-bench
. scripts/conformance/common.sh
DOT=target/dot-venv
case "${1:-all}" in
    all | authority)
        venv "$DOT" Django==5.2.19 django-oauth-toolkit==3.4.1 gunicorn==27.0.1
        exec ./target/release/lockstep-bench --lockstep target/release/lockstep "${@:-all}" --dot "$DOT/bin/python" ;;
    *) exec ./target/release/lockstep-bench --lockstep target/release/lockstep "$@" ;;
esac
