"""Verifies Lockstep's RFC 9068 JWT access tokens with PyJWT, an independent
implementation, against the JWK Set the server publishes: signature, header,
registered claims, refresh, key rotation (old tokens keep verifying, new ones
carry the new kid), and that introspection tells the truth after revocation.

Usage: jwt_check.py BASE_URL ADMIN_TOKEN LOCKSTEP_BIN DATA_DIR
Prints one line per check and a summary line with the counts; exits 1 on any
failure.
"""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from importlib.metadata import version

import jwt

BASE, ADMIN, BIN, DATA = sys.argv[1:5]
passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"  ok    {name}")
    else:
        failed += 1
        print(f"  FAIL  {name} {detail}")


def call(method, path, body=None, form=None, auth=True):
    headers = {}
    data = None
    if auth:
        headers["Authorization"] = f"Bearer {ADMIN}"
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    if form is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        data = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, (json.loads(text) if text else None)


def verify(token, jwks, meta):
    header = jwt.get_unverified_header(token)
    keys = {k["kid"]: k for k in jwks["keys"]}
    key = jwt.PyJWK.from_dict(keys[header["kid"]])
    claims = jwt.decode(
        token,
        key=key,
        algorithms=["ES256"],
        audience=meta["issuer"],
        issuer=meta["issuer"],
        options={"require": ["exp", "iat", "sub", "jti", "client_id", "iss", "aud"]},
    )
    return header, claims


status, meta = call("GET", "/.well-known/oauth-authorization-server", auth=False)
check("RFC 8414 metadata is served", status == 200 and meta["issuer"] == BASE, f"{status} {meta}")
status, jwks = call("GET", "/.well-known/jwks.json", auth=False)
check("the JWK Set is served", status == 200 and len(jwks["keys"]) == 1, f"{status} {jwks}")
check("the JWK Set holds public keys only", all("d" not in k for k in jwks["keys"]))

status, user = call(
    "POST",
    "/scim/v2/Users",
    {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "jwt-check@example.com"},
)
check("a user is created", status == 201, f"{status} {user}")
status, opened = call("POST", "/v1/sessions", {"subject": user["id"], "format": "jwt", "refresh": True, "ttl": "1h"})
check("a JWT session is opened", status == 201 and opened["format"] == "jwt", f"{status} {opened}")
first = opened["access_token"]

try:
    header, claims = verify(first, jwks, meta)
    check("PyJWT verifies the signature against the JWK Set (ES256)", True)
    check("header typ is at+jwt (RFC 9068 §2.1)", header.get("typ") == "at+jwt", header)
    check("header kid names the published key", header["kid"] == jwks["keys"][0]["kid"])
    check("sub is the identity's SCIM id", claims["sub"] == user["id"], claims)
    check("sid is the session id", claims["sid"] == opened["session_id"], claims)
    check("client_id is the issuer of the session (admin)", claims["client_id"] == "admin", claims)
    check("exp is at most 5 minutes after iat", 0 < claims["exp"] - claims["iat"] <= 300, claims)
    check("groups and tier are claims", claims["groups"] == [] and claims["tier"] == "standard", claims)
except Exception as e:  # noqa: BLE001 - any failure is a failed check
    check("PyJWT verifies the first token", False, repr(e))

tampered = first[:-8] + ("A" if first[-8] != "A" else "B") + first[-7:]
try:
    verify(tampered, jwks, meta)
    check("a tampered signature is rejected", False)
except jwt.InvalidSignatureError:
    check("a tampered signature is rejected", True)
except Exception as e:  # noqa: BLE001
    check("a tampered signature is rejected", True, repr(e))

status, body = call("POST", "/oauth2/introspect", form={"token": first})
check("introspection answers the JWT active", status == 200 and body["active"] is True, body)

status, refreshed = call("POST", "/oauth2/token", form={"grant_type": "refresh_token", "refresh_token": opened["refresh_token"]})
check("a refresh gives a new JWT", status == 200 and refreshed["access_token"].count(".") == 2, f"{status} {refreshed}")
try:
    _, claims2 = verify(refreshed["access_token"], jwks, meta)
    check("the refreshed JWT verifies, with a new jti", claims2["jti"] != claims["jti"])
except Exception as e:  # noqa: BLE001
    check("the refreshed JWT verifies", False, repr(e))

# Key rotation beside the running server.
rotated = subprocess.run([BIN, "keys", "rotate", "--data-dir", DATA], capture_output=True, text=True)
check("lockstep keys rotate succeeds", rotated.returncode == 0, rotated.stderr)
for _ in range(150):
    status, jwks2 = call("GET", "/.well-known/jwks.json", auth=False)
    if len(jwks2["keys"]) == 2:
        break
    time.sleep(0.1)
check("the server publishes the new key beside the old one", len(jwks2["keys"]) == 2, jwks2)
status, opened2 = call("POST", "/v1/sessions", {"subject": user["id"], "format": "jwt"})
try:
    header3, _ = verify(opened2["access_token"], jwks2, meta)
    check("a token issued after rotation verifies with the new key", header3["kid"] == jwks2["keys"][0]["kid"])
    check("the new key differs from the old", header3["kid"] != header["kid"])
    verify(first, jwks2, meta)
    check("a token signed before rotation still verifies", True)
except Exception as e:  # noqa: BLE001
    check("tokens verify across the rotation", False, repr(e))

def status_of(token, jwks_now):
    """The Token Status List bit of a JWT, read as a resource server would:
    the status claim's uri, the list token verified with PyJWT (typ
    statuslist+jwt, sub = uri), lst base64url-decoded and zlib-inflated."""
    import base64
    import zlib
    ref = jwt.decode(token, options={"verify_signature": False})["status"]["status_list"]
    path = ref["uri"][len(BASE):]
    req = urllib.request.Request(BASE + path)
    with urllib.request.urlopen(req) as r:
        ctype = r.headers["Content-Type"]
        list_token = r.read().decode()
    header = jwt.get_unverified_header(list_token)
    keys = {k["kid"]: k for k in jwks_now["keys"]}
    claims = jwt.decode(list_token, key=jwt.PyJWK.from_dict(keys[header["kid"]]), algorithms=["ES256"],
                        options={"require": ["sub", "iat"], "verify_aud": False})
    ok = header.get("typ") == "statuslist+jwt" and claims["sub"] == ref["uri"] and ctype == "application/statuslist+jwt"
    lst = claims["status_list"]["lst"]
    raw = zlib.decompress(base64.urlsafe_b64decode(lst + "=" * (-len(lst) % 4)))
    bits = claims["status_list"]["bits"]
    idx = ref["idx"]
    per = 8 // bits
    return ok, (raw[idx // per] >> ((idx % per) * bits)) & ((1 << bits) - 1)


try:
    shape_ok, bit = status_of(first, jwks2)
    check("the status list token verifies with PyJWT (typ statuslist+jwt, sub is the uri)", shape_ok)
    check("a live JWT's status bit is 0 (valid), decoded with zlib", bit == 0, bit)
except Exception as e:  # noqa: BLE001
    check("the status list is readable by an independent decoder", False, repr(e))

status, _ = call("DELETE", f"/v1/sessions/{opened['session_id']}")
check("the session is revoked", status == 204, status)
try:
    _, bit = status_of(first, jwks2)
    check("the revoked JWT's status bit is 1 (invalid) right after the revocation", bit == 1, bit)
    _, bit = status_of(opened2["access_token"], jwks2)
    check("another session's JWT stays 0", bit == 0, bit)
except Exception as e:  # noqa: BLE001
    check("the status list after revocation", False, repr(e))
status, body = call("POST", "/oauth2/introspect", form={"token": first})
check("introspection answers the revoked session's JWT inactive", body == {"active": False}, body)
status, body = call("POST", "/oauth2/introspect", form={"token": refreshed["access_token"]})
check("... and every other token of the session", body == {"active": False}, body)

print(
    f"JWT conformance (PyJWT {version('PyJWT')}, cryptography {version('cryptography')}): "
    f"{passed} checks passed, {failed} failed"
)
sys.exit(1 if failed else 0)
