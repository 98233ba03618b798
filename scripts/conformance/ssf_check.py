"""Judges Lockstep's Shared Signals (OpenID SSF 1.0) transmitter from the
outside: a receiver written here, on the Python standard library, takes RFC
8935 pushes from a real `lockstep serve`, and PyJWT, an independent
implementation, verifies every Security Event Token (RFC 8417) against the
JWK Set the SSF discovery document names; an RFC 8936 poll stream is polled,
verified and acknowledged the same way.

Usage: ssf_check.py BASE_URL ADMIN_TOKEN
Prints one line per check and a summary line with the counts; exits 1 on any
failure.
"""

import json
import secrets
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version

import jwt
from jwt.utils import base64url_encode

BASE, ADMIN = sys.argv[1:3]
PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"
SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
ACCOUNT_DISABLED = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PUSH_AUD = "https://push-rp.example.com"
POLL_AUD = "https://poll-rp.example.com"
# The receiver's own secret, given to the transmitter with the stream.
RECEIVER_AUTH = "Bearer rx-" + secrets.token_hex(16)

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"  ok    {name}")
    else:
        failed += 1
        detail = str(detail)
        print(f"  FAIL  {name} {detail if len(detail) <= 2000 else detail[:2000] + ' …'}")


def call(method, path_or_url, body=None, token=ADMIN):
    headers = {}
    data = None
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    url = path_or_url if path_or_url.startswith("http") else BASE + path_or_url
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, (json.loads(text) if text else None)
        except ValueError:
            return e.code, text.decode(errors="replace")


# ---------------------------------------------------------------- receiver


class Receiver(BaseHTTPRequestHandler):
    """An RFC 8935 push endpoint: records every request; 202 for a SET
    delivered as the RFC asks, 400 or 401 with an RFC 8935 §2.3 error
    otherwise (the checks below count both)."""

    received = []  # (content_type, authorization, body) of every POST
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 - the http.server API
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace")
        ctype = self.headers.get("Content-Type")
        auth = self.headers.get("Authorization")
        with Receiver.lock:
            Receiver.received.append((self.path, ctype, auth, body))
        if auth != RECEIVER_AUTH:
            return self.answer(401, {"err": "authentication_failed", "description": "wrong Authorization"})
        if ctype != "application/secevent+jwt":
            return self.answer(400, {"err": "invalid_request", "description": f"Content-Type {ctype!r}"})
        return self.answer(202, None)

    def answer(self, status, body):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
ENDPOINT = f"http://127.0.0.1:{receiver.server_address[1]}/events"


def pushed():
    with Receiver.lock:
        return list(Receiver.received)


# ---------------------------------------------------------------- SET verification

seen_jtis = {}  # jti -> how many times a SET carrying it was verified here


def verify_set(token, audience, jwks_client, meta):
    """PyJWT verifies one SET; returns (header, claims) or raises. Every
    rule of RFC 8417 and SSF 1.0 §4 that PyJWT does not check itself is
    checked here."""
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "secevent+jwt":
        raise ValueError(f"header typ {header.get('typ')!r}, not secevent+jwt (RFC 8417 §2.3)")
    if header.get("alg") != "ES256" or not header.get("kid"):
        raise ValueError(f"header {header} lacks alg ES256 or kid")
    key = jwks_client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key=key.key,
        algorithms=["ES256"],
        audience=audience,
        issuer=meta["issuer"],
        options={"require": ["iss", "aud", "iat", "jti"]},
    )
    if "sub" in claims or "exp" in claims:
        raise ValueError(f"a SET carries sub or exp (RFC 8417 §2.2, SSF 1.0 §4.1): {claims}")
    if not isinstance(claims.get("events"), dict) or len(claims["events"]) != 1:
        raise ValueError(f"a SET carries exactly one event (SSF 1.0 §4.1): {claims.get('events')}")
    if not isinstance(claims.get("txn"), str) or not claims["txn"]:
        raise ValueError(f"txn is missing: {claims}")
    if not isinstance(claims.get("sub_id"), dict) or "format" not in claims["sub_id"]:
        raise ValueError(f"sub_id is not an RFC 9493 subject identifier: {claims.get('sub_id')}")
    seen_jtis[claims["jti"]] = seen_jtis.get(claims["jti"], 0) + 1
    return header, claims


def event_type(claims):
    return next(iter(claims["events"]))


def opaque(value):
    return {"format": "opaque", "id": value}


def wait_for(what, predicate, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def run():
    # ---------------------------------------------------------------- discovery

    status, meta = call("GET", "/.well-known/ssf-configuration", token=None)
    check("the SSF discovery document is served to anyone", status == 200 and isinstance(meta, dict), f"{status} {meta}")
    check("it names the issuer and a jwks_uri", meta.get("issuer") == BASE and meta.get("jwks_uri", "").startswith(BASE), meta)
    check(
        "it offers push (RFC 8935) and poll (RFC 8936) delivery",
        set(meta.get("delivery_methods_supported", [])) == {PUSH, POLL},
        meta,
    )
    jwks_client = jwt.PyJWKClient(meta["jwks_uri"])

    # ---------------------------------------------------------------- a receiver's client

    status, _ = call("POST", "/ssf/streams", {"delivery": {"method": POLL}}, token=None)
    check("creating a stream without credentials is refused (401)", status == 401, status)
    status, client = call("POST", "/v1/clients", {"name": "ssf-conformance-rp", "scopes": ["ssf"]})
    check("an API client with scope ssf is created", status == 201 and client.get("client_secret"), f"{status} {client}")
    rp_secret = client["client_secret"]
    status, other = call("POST", "/v1/clients", {"name": "ssf-conformance-other", "scopes": ["ssf"]})
    check("a second ssf client is created", status == 201, f"{status} {other}")
    other_secret = other["client_secret"]
    status, scim_only = call("POST", "/v1/clients", {"name": "ssf-conformance-scim", "scopes": ["scim"]})
    status, _ = call("POST", "/ssf/streams", {"delivery": {"method": POLL}}, token=scim_only["client_secret"])
    check("a client without scope ssf cannot create a stream (403)", status == 403, status)

    # ---------------------------------------------------------------- the push stream

    status, push = call(
        "POST",
        "/ssf/streams",
        {
            "delivery": {"method": PUSH, "endpoint_url": ENDPOINT, "authorization_header": RECEIVER_AUTH},
            "events_requested": [SESSION_REVOKED, ACCOUNT_DISABLED],
            "aud": PUSH_AUD,
        },
        token=rp_secret,
    )
    check("the client creates a push stream (201)", status == 201 and push.get("stream_id"), f"{status} {push}")
    check(
        "the stream configuration echoes the delivery, aud and iss",
        push["delivery"].get("method") == PUSH
        and push["delivery"].get("endpoint_url") == ENDPOINT
        and push.get("aud") == PUSH_AUD
        and push.get("iss") == meta["issuer"],
        push,
    )
    check("the receiver's authorization_header is never shown back", "authorization_header" not in push["delivery"], push)
    check(
        "events_delivered holds what was requested",
        {SESSION_REVOKED, ACCOUNT_DISABLED} <= set(push.get("events_delivered", [])),
        push,
    )
    status, _ = call("GET", f"/ssf/streams?stream_id={push['stream_id']}", token=other_secret)
    check("another client does not see the stream (404)", status == 404, status)

    # Verification: the state comes back in a signed SET.
    state = secrets.token_urlsafe(12)
    status, _ = call("POST", "/ssf/verify", {"stream_id": push["stream_id"], "state": state}, token=rp_secret)
    check("verification is requested (204)", status == 204, status)
    wait_for("the verification SET", lambda: len(pushed()) >= 1)
    verification = None
    for _, _, _, body in pushed():
        try:
            _, c = verify_set(body, PUSH_AUD, jwks_client, meta)
            if event_type(c) == VERIFICATION:
                verification = c
        except Exception as e:  # noqa: BLE001 - any failure is a failed check
            check("the verification SET verifies with PyJWT", False, repr(e))
    check("the verification SET arrives and verifies with PyJWT", verification is not None, pushed())
    if verification is not None:
        check("it echoes state", verification["events"][VERIFICATION].get("state") == state, verification)
        check("its subject is the stream", verification["sub_id"] == opaque(push["stream_id"]), verification)
    first_pushes = len(pushed())

    # A user with a session, deactivated over SCIM.
    status, user = call("POST", "/scim/v2/Users", {"schemas": [USER], "userName": "ssf-check@example.com"})
    check("a user is created over SCIM", status == 201 and user.get("id"), f"{status} {user}")
    status, session = call("POST", "/v1/sessions", {"subject": "ssf-check@example.com", "ttl": "1h"})
    check("a session is opened for the user", status == 201 and session.get("session_id"), f"{status} {session}")
    status, _ = call(
        "PATCH",
        f"/scim/v2/Users/{user['id']}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": False}]},
    )
    check("the user is deactivated over SCIM", status == 200, status)

    wait_for("two more SETs", lambda: len(pushed()) >= first_pushes + 2)
    time.sleep(0.3)  # anything extra would arrive now
    requests = pushed()
    check(
        "every push is a POST to the registered endpoint with its Authorization header",
        all(p == "/events" and a == RECEIVER_AUTH for p, _, a, _ in requests),
        [(p, a) for p, _, a, _ in requests],
    )
    check(
        "every push has Content-Type application/secevent+jwt (RFC 8935 §2)",
        all(c == "application/secevent+jwt" for _, c, _, _ in requests),
        [c for _, c, _, _ in requests],
    )
    by_type = {}
    for _, _, _, body in requests[first_pushes:]:
        try:
            _, c = verify_set(body, PUSH_AUD, jwks_client, meta)
            by_type.setdefault(event_type(c), []).append(c)
        except Exception as e:  # noqa: BLE001
            check("a pushed SET verifies with PyJWT (signature, typ, iss, aud, one event, no sub/exp, txn)", False, repr(e))
    check(
        "the deactivation pushed exactly session-revoked and account-disabled",
        sorted((k, len(v)) for k, v in by_type.items()) == sorted([(SESSION_REVOKED, 1), (ACCOUNT_DISABLED, 1)]),
        {k: len(v) for k, v in by_type.items()},
    )
    revoked = (by_type.get(SESSION_REVOKED) or [None])[0]
    disabled = (by_type.get(ACCOUNT_DISABLED) or [None])[0]
    if revoked is not None and disabled is not None:
        check("both SETs verify with PyJWT (signature, typ, iss, aud, one event, no sub/exp, txn)", True)
        check(
            "session-revoked names the user and the session (complex sub_id)",
            revoked["sub_id"]
            == {"format": "complex", "user": opaque(user["id"]), "session": opaque(session["session_id"])},
            revoked["sub_id"],
        )
        check(
            "session-revoked carries event_timestamp and initiating_entity (CAEP)",
            isinstance(revoked["events"][SESSION_REVOKED].get("event_timestamp"), int)
            and revoked["events"][SESSION_REVOKED].get("initiating_entity") in ("admin", "user", "policy", "system"),
            revoked["events"][SESSION_REVOKED],
        )
        check("account-disabled names the user (opaque, SCIM id)", disabled["sub_id"] == opaque(user["id"]), disabled["sub_id"])
        check("both share one txn", revoked["txn"] == disabled["txn"], (revoked["txn"], disabled["txn"]))
        check("their jti differ", revoked["jti"] != disabled["jti"])
        check("iat is now, give or take a minute", abs(revoked["iat"] - time.time()) < 60, revoked["iat"])
    else:
        check("the deactivation's SETs arrived", False, pushed())

    # Tampering: the receiver's verifier must refuse a modified SET.
    body = requests[-1][3]
    head, payload, signature = body.split(".")
    forged = base64url_encode(
        json.dumps({**jwt.decode(body, options={"verify_signature": False}), "aud": PUSH_AUD, "txn": "forged"}).encode()
    ).decode()
    try:
        jwt.decode(f"{head}.{forged}.{signature}", key=jwks_client.get_signing_key_from_jwt(body).key,
                   algorithms=["ES256"], audience=PUSH_AUD, issuer=meta["issuer"])
        check("a SET with altered claims does not verify", False)
    except jwt.InvalidSignatureError:
        check("a SET with altered claims does not verify", True)
    except Exception as e:  # noqa: BLE001
        check("a SET with altered claims does not verify", False, f"(not for its signature) {e!r}")
    try:
        verify_set(body, "https://someone-else.example.com", jwks_client, meta)
        check("a SET is not accepted for another audience", False)
    except jwt.InvalidAudienceError:
        check("a SET is not accepted for another audience", True)
    except Exception as e:  # noqa: BLE001
        check("a SET is not accepted for another audience", False, f"(not for its aud) {e!r}")

    # ---------------------------------------------------------------- the poll stream

    status, poll = call(
        "POST",
        "/ssf/streams",
        {"delivery": {"method": POLL}, "events_requested": [SESSION_REVOKED, ACCOUNT_DISABLED], "aud": POLL_AUD},
        token=rp_secret,
    )
    check("the client creates a poll stream (201)", status == 201 and poll.get("stream_id"), f"{status} {poll}")
    poll_url = poll["delivery"].get("endpoint_url", "")
    check(
        "its endpoint_url is the RFC 8936 poll endpoint",
        poll["delivery"].get("method") == POLL and poll_url.startswith(BASE) and poll_url.endswith(poll["stream_id"]),
        poll,
    )
    status, body = call("POST", poll_url, {"returnImmediately": True}, token=rp_secret)
    check(
        "a fresh poll stream has nothing pending",
        status == 200 and body == {"sets": {}, "moreAvailable": False},
        f"{status} {body}",
    )

    status, user2 = call("POST", "/scim/v2/Users", {"schemas": [USER], "userName": "ssf-poll@example.com"})
    status, session2 = call("POST", "/v1/sessions", {"subject": "ssf-poll@example.com", "ttl": "1h"})
    check("a second user with a session", status == 201, f"{status} {session2}")
    status, _ = call(
        "PATCH",
        f"/scim/v2/Users/{user2['id']}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": False}]},
    )
    check("the second user is deactivated over SCIM", status == 200, status)

    status, _ = call("POST", poll_url, {"returnImmediately": True}, token=other_secret)
    check("another client cannot poll the stream (404)", status == 404, status)
    status, page = call("POST", poll_url, {"maxEvents": 1, "returnImmediately": True}, token=rp_secret)
    check(
        "maxEvents 1 returns one SET and moreAvailable",
        status == 200 and len(page.get("sets", {})) == 1 and page.get("moreAvailable") is True,
        f"{status} {page}",
    )
    status, page = call("POST", poll_url, {"maxEvents": 10, "returnImmediately": True}, token=rp_secret)
    sets = page.get("sets", {}) if isinstance(page, dict) else {}
    check(
        "returnImmediately returns both SETs, nothing more",
        status == 200 and len(sets) == 2 and page.get("moreAvailable") is False,
        f"{status} {page}",
    )
    polled = {}
    for jti, token in sets.items():
        try:
            _, c = verify_set(token, POLL_AUD, jwks_client, meta)
            check(f"a polled SET verifies with PyJWT ({event_type(c).rsplit('/', 1)[-1]})", True)
            check("the key of the sets map is the SET's jti", c["jti"] == jti, (jti, c["jti"]))
            polled[event_type(c)] = c
        except Exception as e:  # noqa: BLE001
            check("a polled SET verifies with PyJWT", False, repr(e))
            seen_jtis[jti] = seen_jtis.get(jti, 0) + 1
    check("the polled SETs are session-revoked and account-disabled", set(polled) == {SESSION_REVOKED, ACCOUNT_DISABLED}, list(polled))
    if set(polled) == {SESSION_REVOKED, ACCOUNT_DISABLED}:
        check(
            "the polled session-revoked names the second user and session",
            polled[SESSION_REVOKED]["sub_id"]
            == {"format": "complex", "user": opaque(user2["id"]), "session": opaque(session2["session_id"])},
            polled[SESSION_REVOKED]["sub_id"],
        )
        check("the polled account-disabled names the second user", polled[ACCOUNT_DISABLED]["sub_id"] == opaque(user2["id"]))
        check("the polled SETs share one txn", polled[SESSION_REVOKED]["txn"] == polled[ACCOUNT_DISABLED]["txn"])
    status, page = call("POST", poll_url, {"returnImmediately": True}, token=rp_secret)
    check(
        "unacknowledged SETs are offered again, same jti",
        status == 200 and set(page.get("sets", {})) == set(sets),
        f"{status} {page}",
    )
    status, page = call("POST", poll_url, {"ack": list(sets), "returnImmediately": True}, token=rp_secret)
    check(
        "ack removes them: the poll that acknowledges returns nothing more",
        status == 200 and page == {"sets": {}, "moreAvailable": False},
        f"{status} {page}",
    )
    status, page = call("POST", poll_url, {"returnImmediately": True}, token=rp_secret)
    check("... and so does the next poll", status == 200 and page == {"sets": {}, "moreAvailable": False}, f"{status} {page}")

    # The push stream heard of the second user too; none of it was polled away.
    wait_for("the second user's pushes", lambda: len(pushed()) >= first_pushes + 4)
    time.sleep(0.3)
    later = []
    for _, _, _, body in pushed()[first_pushes + 2:]:
        try:
            _, c = verify_set(body, PUSH_AUD, jwks_client, meta)
            later.append(c)
        except Exception as e:  # noqa: BLE001
            check("a later pushed SET verifies with PyJWT", False, repr(e))
    check(
        "the push stream also got the second user's two SETs",
        sorted(event_type(c) for c in later) == sorted([SESSION_REVOKED, ACCOUNT_DISABLED])
        and all(user2["id"] in json.dumps(c["sub_id"]) for c in later),
        later,
    )
    if later and polled:
        check(
            "each stream gets its own jti for one signal, with the same txn",
            not ({c["jti"] for c in later} & {c["jti"] for c in polled.values()})
            and {c["txn"] for c in later} == {c["txn"] for c in polled.values()},
        )
    check(
        "no jti was ever seen twice",
        seen_jtis and all(n == 1 for n in seen_jtis.values()),
        {j: n for j, n in seen_jtis.items() if n != 1},
    )


try:
    run()
except Exception:  # noqa: BLE001 - a check that cannot go on is a failure
    check("the checks ran to the end", False, "\n" + traceback.format_exc())
receiver.shutdown()
print(
    f"SSF conformance (PyJWT {version('PyJWT')}, cryptography {version('cryptography')}): "
    f"{passed} checks passed, {failed} failed"
)
sys.exit(1 if failed else 0)
