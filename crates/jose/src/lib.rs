//! JOSE for Lockstep: the ES256 signing keys kept in the data directory,
//! compact JWS signing and verification (RFC 7515), and the JWK Set that
//! publishes the public keys (RFC 7517).
//!
//! One keyring signs everything Lockstep signs: RFC 9068 access tokens now,
//! Security Event Tokens later. The newest unretired key signs; retired
//! keys stay published until every token they signed has expired, so a
//! resource server that caches the JWK Set never meets a `kid` it cannot
//! find. A key's `kid` is its RFC 7638 thumbprint, so the same key always
//! has the same name and a `kid` can be checked against the key it names.
//!
//! ES256 because it is what RFC 9068 resource servers universally support,
//! its keys and signatures are small (a JWT stays under a typical header
//! limit with a few dozen groups) and signing is fast. aws-lc-rs is the one
//! crypto provider of the tree (rustls uses it too).

mod file;
mod foreign;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::fmt;

pub use file::{SharedKeys, load_or_create, rotate_file};
pub use foreign::{ForeignError, peek, verify_with_jwks};

/// Why a JOSE operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    /// The key file does not parse or holds an unusable key.
    #[error("key file: {0}")]
    KeyFile(String),
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The crypto provider refused (key generation or signing).
    #[error("crypto: {0}")]
    Crypto(String),
    /// There is no key to sign with.
    #[error("the keyring holds no signing key")]
    NoSigningKey,
    /// A token does not verify.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// One signing key. Its `Debug` shows only the `kid` and dates.
struct SigningKey {
    kid: String,
    /// Unix seconds it was created.
    created: i64,
    /// Unix seconds it stopped signing (a newer key took over).
    retired: Option<i64>,
    /// The private key, PKCS#8 DER (what the key file keeps).
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created", &self.created)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_pkcs8(pkcs8: Vec<u8>, created: i64, retired: Option<i64>) -> Result<Self, JoseError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(|e| JoseError::KeyFile(format!("not a P-256 PKCS#8 key: {e}")))?;
        let kid = thumbprint(&public_jwk_parts(pair.public_key().as_ref())?);
        Ok(Self { kid, created, retired, pkcs8, pair })
    }

    fn jwk(&self) -> Result<Jwk, JoseError> {
        let (x, y) = public_jwk_parts(self.pair.public_key().as_ref())?;
        Ok(Jwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x,
            y,
            kid: self.kid.clone(),
            alg: "ES256".into(),
            key_use: "sig".into(),
        })
    }
}

/// The base64url `x` and `y` of an uncompressed P-256 point.
fn public_jwk_parts(point: &[u8]) -> Result<(String, String), JoseError> {
    match point {
        [0x04, rest @ ..] if rest.len() == 64 => {
            Ok((URL_SAFE_NO_PAD.encode(&rest[..32]), URL_SAFE_NO_PAD.encode(&rest[32..])))
        }
        _ => Err(JoseError::Crypto("unexpected public key encoding".into())),
    }
}

/// RFC 7638 thumbprint of an EC public key: SHA-256 of the required
/// members in lexicographic order, without whitespace.
fn thumbprint((x, y): &(String, String)) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
}

/// A public key as published (RFC 7517 §4, RFC 7518 §6.2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    /// `EC`.
    pub kty: String,
    /// `P-256`.
    pub crv: String,
    /// The x coordinate, base64url.
    pub x: String,
    /// The y coordinate, base64url.
    pub y: String,
    /// Key id (its RFC 7638 thumbprint).
    pub kid: String,
    /// `ES256`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub key_use: String,
}

/// `GET /.well-known/jwks.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JwkSet {
    /// Every published key, the signing key first.
    pub keys: Vec<Jwk>,
}

/// A JWS protected header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    /// `ES256`.
    pub alg: String,
    /// Media type, e.g. `at+jwt` (RFC 9068) or `secevent+jwt` (RFC 8417).
    pub typ: String,
    /// The signing key.
    pub kid: String,
}

/// What the key file holds (no `Debug`: it holds private keys).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    /// Format version (1).
    version: u32,
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    kid: String,
    created: i64,
    retired: Option<i64>,
    /// PKCS#8 DER, base64url.
    pkcs8: String,
}

/// The signing keys, newest first.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<SigningKey>,
    rng: SystemRandom,
}

impl Keyring {
    /// A keyring with one fresh key created at `now` (Unix seconds).
    pub fn generate(now: i64) -> Result<Self, JoseError> {
        let mut ring = Self { keys: Vec::new(), rng: SystemRandom::new() };
        ring.add_key(now)?;
        Ok(ring)
    }

    fn add_key(&mut self, now: i64) -> Result<(), JoseError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.rng)
            .map_err(|e| JoseError::Crypto(format!("key generation failed: {e}")))?;
        let key = SigningKey::from_pkcs8(doc.as_ref().to_vec(), now, None)?;
        self.keys.insert(0, key);
        Ok(())
    }

    /// Parses a key file.
    pub fn from_json(text: &str) -> Result<Self, JoseError> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| JoseError::KeyFile(e.to_string()))?;
        if file.version != 1 {
            return Err(JoseError::KeyFile(format!("unknown key file version {}", file.version)));
        }
        let mut keys = Vec::with_capacity(file.keys.len());
        for stored in file.keys {
            let pkcs8 = URL_SAFE_NO_PAD
                .decode(stored.pkcs8.as_bytes())
                .map_err(|e| JoseError::KeyFile(format!("key {}: {e}", stored.kid)))?;
            let key = SigningKey::from_pkcs8(pkcs8, stored.created, stored.retired)?;
            if key.kid != stored.kid {
                return Err(JoseError::KeyFile(format!(
                    "key {} does not match its kid (its thumbprint is {})",
                    stored.kid, key.kid
                )));
            }
            keys.push(key);
        }
        keys.sort_by_key(|k| std::cmp::Reverse(k.created));
        Ok(Self { keys, rng: SystemRandom::new() })
    }

    /// The key file's text.
    pub fn to_json(&self) -> Result<String, JoseError> {
        let file = KeyFile {
            version: 1,
            keys: self
                .keys
                .iter()
                .map(|k| StoredKey {
                    kid: k.kid.clone(),
                    created: k.created,
                    retired: k.retired,
                    pkcs8: URL_SAFE_NO_PAD.encode(&k.pkcs8),
                })
                .collect(),
        };
        serde_json::to_string_pretty(&file).map_err(|e| JoseError::KeyFile(e.to_string()))
    }

    /// Starts signing with a new key; the current one is retired at `now`
    /// (still published). Returns the new key's id.
    pub fn rotate(&mut self, now: i64) -> Result<String, JoseError> {
        for key in self.keys.iter_mut().filter(|k| k.retired.is_none()) {
            key.retired = Some(now);
        }
        self.add_key(now)?;
        Ok(self.keys.first().map(|k| k.kid.clone()).unwrap_or_default())
    }

    /// Drops keys retired more than `keep` seconds before `now` (every
    /// token they signed has expired by then); returns their ids.
    pub fn prune(&mut self, now: i64, keep: i64) -> Vec<String> {
        let mut dropped = Vec::new();
        self.keys.retain(|k| match k.retired {
            Some(at) if now.saturating_sub(at) > keep => {
                dropped.push(k.kid.clone());
                false
            }
            _ => true,
        });
        dropped
    }

    /// The id of the key that signs.
    pub fn signing_kid(&self) -> Option<&str> {
        self.keys.iter().find(|k| k.retired.is_none()).map(|k| k.kid.as_str())
    }

    /// Every key's id, newest first, with when it was retired.
    pub fn kids(&self) -> Vec<(String, Option<i64>)> {
        self.keys.iter().map(|k| (k.kid.clone(), k.retired)).collect()
    }

    /// A compact JWS of `claims` with media type `typ`, signed ES256 by the
    /// current key.
    pub fn sign(&self, typ: &str, claims: &impl Serialize) -> Result<String, JoseError> {
        let key = self.keys.iter().find(|k| k.retired.is_none()).ok_or(JoseError::NoSigningKey)?;
        let header = Header { alg: "ES256".into(), typ: typ.into(), kid: key.kid.clone() };
        let header = serde_json::to_vec(&header).map_err(|e| JoseError::Crypto(e.to_string()))?;
        let payload = serde_json::to_vec(claims).map_err(|e| JoseError::Crypto(e.to_string()))?;
        let mut jws = String::with_capacity(64 + payload.len() * 4 / 3 + 90);
        jws.push_str(&URL_SAFE_NO_PAD.encode(header));
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let signature = key
            .pair
            .sign(&self.rng, jws.as_bytes())
            .map_err(|e| JoseError::Crypto(format!("signing failed: {e}")))?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(jws)
    }

    /// The published keys.
    pub fn jwks(&self) -> Result<JwkSet, JoseError> {
        Ok(JwkSet { keys: self.keys.iter().map(SigningKey::jwk).collect::<Result<_, _>>()? })
    }

    /// Verifies a compact JWS signed by one of the keys; returns its header
    /// and claims. (Lockstep's own check of what it signed; resource servers
    /// use their own libraries against the JWK Set.)
    pub fn verify(&self, jws: &str) -> Result<(Header, serde_json::Value), JoseError> {
        let invalid = |m: &str| JoseError::Invalid(m.to_owned());
        let mut parts = jws.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a compact JWS (three parts)"));
        };
        let decode =
            |part: &str| URL_SAFE_NO_PAD.decode(part.as_bytes()).map_err(|_| invalid("not base64url"));
        let header: Header =
            serde_json::from_slice(&decode(h)?).map_err(|_| invalid("header is not JSON"))?;
        if header.alg != "ES256" {
            return Err(invalid("alg is not ES256"));
        }
        let key = self.keys.iter().find(|k| k.kid == header.kid).ok_or_else(|| invalid("unknown kid"))?;
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.pair.public_key().as_ref());
        let signed = &jws[..h.len() + 1 + p.len()];
        public.verify(signed.as_bytes(), &decode(s)?).map_err(|_| invalid("bad signature"))?;
        let claims = serde_json::from_slice(&decode(p)?).map_err(|_| invalid("payload is not JSON"))?;
        Ok((header, claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_private_key() {
        let ring = Keyring::generate(1_000).unwrap();
        let file: serde_json::Value = serde_json::from_str(&ring.to_json().unwrap()).unwrap();
        let pkcs8 = file["keys"][0]["pkcs8"].as_str().unwrap();
        let debug = format!("{ring:?}");
        assert!(!debug.contains(&pkcs8[..24]), "{debug}");
        assert!(debug.contains(ring.signing_kid().unwrap()), "{debug}");
    }

    #[test]
    fn signs_and_verifies_and_names_keys_by_thumbprint() {
        let ring = Keyring::generate(1_000).unwrap();
        let jwt = ring.sign("at+jwt", &serde_json::json!({"sub": "x", "exp": 2_000})).unwrap();
        let (header, claims) = ring.verify(&jwt).unwrap();
        assert_eq!(header.typ, "at+jwt");
        assert_eq!(claims["sub"], "x");
        let jwks = ring.jwks().unwrap();
        assert_eq!(jwks.keys.len(), 1);
        let jwk = &jwks.keys[0];
        assert_eq!(jwk.kid, thumbprint(&(jwk.x.clone(), jwk.y.clone())));
        assert_eq!(header.kid, jwk.kid);
        // A flipped byte of the payload fails.
        let mut parts: Vec<&str> = jwt.split('.').collect();
        let other = URL_SAFE_NO_PAD.encode(br#"{"sub":"y","exp":2000}"#);
        parts[1] = &other;
        assert!(ring.verify(&parts.join(".")).is_err());
    }

    #[test]
    fn rotation_keeps_the_old_key_published_until_pruned() {
        let mut ring = Keyring::generate(1_000).unwrap();
        let old = ring.signing_kid().unwrap().to_owned();
        let token = ring.sign("at+jwt", &serde_json::json!({"n": 1})).unwrap();
        let new = ring.rotate(2_000).unwrap();
        assert_ne!(old, new);
        assert_eq!(ring.signing_kid(), Some(new.as_str()));
        assert!(ring.verify(&token).is_ok(), "tokens of the old key still verify");
        assert_eq!(ring.jwks().unwrap().keys.len(), 2);
        // Round trip through the file format.
        let copy = Keyring::from_json(&ring.to_json().unwrap()).unwrap();
        assert_eq!(copy.kids(), ring.kids());
        assert!(copy.verify(&token).is_ok());
        assert!(ring.prune(2_100, 300).is_empty(), "not yet");
        assert_eq!(ring.prune(2_400, 300), vec![old]);
        assert!(ring.verify(&token).is_err());
    }

    #[test]
    fn a_key_file_whose_kid_does_not_match_is_refused() {
        let ring = Keyring::generate(1).unwrap();
        let text = ring.to_json().unwrap().replace(ring.signing_kid().unwrap(), "forged");
        assert!(matches!(Keyring::from_json(&text), Err(JoseError::KeyFile(_))));
    }
}
