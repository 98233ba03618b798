//! Verifying JWSs signed by someone else against their published JWK Set
//! (an upstream Shared Signals transmitter's SETs): ES256 (P-256) and
//! RS256 keys, chosen by `kid`.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Why a foreign JWS does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForeignError {
    /// Not a compact JWS, or its header or payload is not JSON.
    #[error("malformed: {0}")]
    Malformed(String),
    /// No key with the header's `kid` (or none usable) in the JWK Set.
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    /// The signature does not verify with that key, or the algorithm is
    /// not one we accept.
    #[error("bad signature: {0}")]
    BadSignature(String),
}

fn b64(part: &str) -> Result<Vec<u8>, ForeignError> {
    URL_SAFE_NO_PAD.decode(part.as_bytes()).map_err(|_| ForeignError::Malformed("not base64url".into()))
}

/// The header and claims of a compact JWS, unverified (to read `kid`).
pub fn peek(jws: &str) -> Result<(Value, Value), ForeignError> {
    let mut parts = jws.trim().split('.');
    let (Some(h), Some(p), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(ForeignError::Malformed("not a compact JWS (three parts)".into()));
    };
    let header =
        serde_json::from_slice(&b64(h)?).map_err(|_| ForeignError::Malformed("header is not JSON".into()))?;
    let claims = serde_json::from_slice(&b64(p)?)
        .map_err(|_| ForeignError::Malformed("payload is not JSON".into()))?;
    Ok((header, claims))
}

/// Verifies a compact JWS against a JWK Set (`{"keys": [...]}`); returns
/// its header and claims. `none` and HMAC algorithms are refused.
pub fn verify_with_jwks(jwks: &Value, jws: &str) -> Result<(Value, Value), ForeignError> {
    let jws = jws.trim();
    let (header, claims) = peek(jws)?;
    let kid = header.get("kid").and_then(Value::as_str).unwrap_or("").to_owned();
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let keys = jwks.get("keys").and_then(Value::as_array).cloned().unwrap_or_default();
    let key = keys
        .iter()
        .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid.as_str()))
        .ok_or_else(|| ForeignError::UnknownKey(kid.clone()))?;
    let mut parts = jws.rsplitn(2, '.');
    let (Some(signature), Some(signed)) = (parts.next(), parts.next()) else {
        return Err(ForeignError::Malformed("not a compact JWS".into()));
    };
    let signature = b64(signature)?;
    let field = |name: &str| -> Result<Vec<u8>, ForeignError> {
        let v = key.get(name).and_then(Value::as_str).ok_or_else(|| ForeignError::UnknownKey(kid.clone()))?;
        b64(v)
    };
    let bad = |m: &str| ForeignError::BadSignature(m.to_owned());
    match (alg, key.get("kty").and_then(Value::as_str)) {
        ("ES256", Some("EC")) => {
            if key.get("crv").and_then(Value::as_str) != Some("P-256") {
                return Err(bad("ES256 needs a P-256 key"));
            }
            let mut point = vec![0x04];
            point.extend(field("x")?);
            point.extend(field("y")?);
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(signed.as_bytes(), &signature)
                .map_err(|_| bad("the ES256 signature does not verify"))?;
        }
        ("RS256", Some("RSA")) => {
            let components = RsaPublicKeyComponents { n: field("n")?, e: field("e")? };
            components
                .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature)
                .map_err(|_| bad("the RS256 signature does not verify"))?;
        }
        (alg, _) => {
            return Err(bad(&format!("algorithm {alg:?} with this key is not accepted (ES256, RS256)")));
        }
    }
    Ok((header, claims))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn our_own_sets_verify_against_our_jwks_and_tampering_does_not() {
        let ring = crate::Keyring::generate(0).unwrap();
        let jwks = serde_json::to_value(ring.jwks().unwrap()).unwrap();
        let jws = ring.sign("secevent+jwt", &serde_json::json!({"iss": "x", "jti": "1"})).unwrap();
        let (header, claims) = verify_with_jwks(&jwks, &jws).unwrap();
        assert_eq!((header["typ"].as_str(), claims["jti"].as_str()), (Some("secevent+jwt"), Some("1")));
        let other = crate::Keyring::generate(0).unwrap();
        let forged = other.sign("secevent+jwt", &serde_json::json!({"iss": "x"})).unwrap();
        assert!(matches!(verify_with_jwks(&jwks, &forged), Err(ForeignError::UnknownKey(_))));
        let mut parts: Vec<&str> = jws.split('.').collect();
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"evil","jti":"1"}"#);
        parts[1] = &payload;
        assert!(matches!(verify_with_jwks(&jwks, &parts.join(".")), Err(ForeignError::BadSignature(_))));
        assert!(matches!(verify_with_jwks(&jwks, "a.b"), Err(ForeignError::Malformed(_))));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k"}"#),
            URL_SAFE_NO_PAD.encode(b"{}")
        );
        assert!(verify_with_jwks(&jwks, &none).is_err());
    }
}
