#!/usr/bin/env python3
"""Run python-scim's scim2-tester against a live Lockstep SCIM endpoint.

Usage: scim2_tester_check.py BASE_URL TOKEN [--verbose]

Calls scim2_tester.check_server() directly (rather than through scim2-cli) so
that a failing discovery endpoint is reported as a failed check instead of
aborting the run. Prints one line per check and, last, the plain summary
"scim2-tester: N passed, M failed, K skipped". Exit status 0 iff nothing failed.

Status mapping: SUCCESS/COMPLIANT/ACCEPTABLE count as passed, ERROR/CRITICAL
as failed, DEVIATION (a SHOULD not honoured) is reported but not a failure.
"""
import sys
from collections import Counter

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

PASSED = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}
FAILED = {Status.ERROR, Status.CRITICAL}


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    base, token = argv[1].rstrip("/") + "/", argv[2]
    verbose = "--verbose" in argv[3:]
    http = Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30.0)
    try:
        results = check_server(SyncSCIMClient(http), raise_exceptions=False)
    except Exception as exc:  # the server is unreachable, for instance
        print(f"scim2-tester could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("scim2-tester: 0 passed, 1 failed, 0 skipped")
        return 1
    counts = Counter(r.status for r in results)
    for r in results:
        if r.status in PASSED and not verbose:
            continue
        where = f"[{r.resource_type}] " if r.resource_type else ""
        print(f"{r.status.name:<10} {where}{r.title}")
        if r.reason:
            print(f"           {r.reason}")
    passed = sum(counts[s] for s in PASSED)
    failed = sum(counts[s] for s in FAILED)
    if counts[Status.DEVIATION]:
        print(f"scim2-tester: {counts[Status.DEVIATION]} deviations (SHOULD not honoured; not failures)")
    print(f"scim2-tester: {passed} passed, {failed} failed, {counts[Status.SKIPPED]} skipped")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
