#!/usr/bin/env bash
# Every benchmark in BENCHMARKS.md, each beside its baseline, on this machine.
#
# The token authority's peer is django-oauth-toolkit under gunicorn, installed
# from PyPI into target/dot-venv (pinned versions) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p lockstep -p lockstep-bench
venv=target/dot-venv
if [[ ! -x $venv/bin/gunicorn ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet Django==5.2.19 django-oauth-toolkit==3.4.1 gunicorn==27.0.1
fi
case "${1:-all}" in
    all | authority) exec ./target/release/lockstep-bench --lockstep target/release/lockstep "${@:-all}" --dot "$venv/bin/python" ;;
    *) exec ./target/release/lockstep-bench --lockstep target/release/lockstep "$@" ;;
esac
