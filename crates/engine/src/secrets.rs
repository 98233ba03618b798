//! Minting and hashing bearer secrets.
//!
//! A secret is a type prefix plus, in unpadded base64url, 8 bytes of its
//! issue time (microseconds since the epoch, big-endian) and 32 random
//! bytes. The prefix (`lst_at_`, `lst_cs_`, `lst_adm_`) lets secret
//! scanners recognise a leaked Lockstep credential and tells operators what
//! it is; the random part alone carries the 256 bits.
//!
//! Only a hash is stored: the issue time, then the first 24 bytes of
//! SHA-256 of the whole string. The time goes first so that the store's
//! index of secrets grows at its end, as sessions do: keyed by a plain
//! hash, every new secret went to a random page of a large B-tree (a page
//! read and a page written to the WAL per secret: one of the two random
//! pages an open touched; storing secrets this way took opened sessions
//! from 16.4k to 22.1k/s in the authority benchmark). 192 bits of SHA-256 keep a preimage out of reach, and the
//! time is no secret (a JWT says as much in `iat`). A secret of the older
//! form (32 random bytes, no time) is stored as its full SHA-256 and still
//! works.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lockstep_domain::TokenHash;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::clock::{Entropy, EntropyError};
use lockstep_domain::Timestamp;

/// Prefix of session access tokens.
pub const ACCESS_TOKEN_PREFIX: &str = "lst_at_";
/// Prefix of API client secrets.
pub const CLIENT_SECRET_PREFIX: &str = "lst_cs_";
/// Prefix of generated admin tokens.
pub const ADMIN_TOKEN_PREFIX: &str = "lst_adm_";

/// Base64url characters of a secret's body: 8 bytes of time and 32 random.
const BODY_CHARS: usize = 54;
/// Characters that hold the time (12 decode to 9 bytes; the first 8 count).
const TIME_CHARS: usize = 12;

/// Mints a new secret with `prefix`, issued `now`.
pub fn mint(prefix: &str, now: Timestamp, entropy: &dyn Entropy) -> Result<String, EntropyError> {
    let mut bytes = [0u8; 40];
    bytes[..8].copy_from_slice(&u64::try_from(now.micros()).unwrap_or(0).to_be_bytes());
    entropy.fill(&mut bytes[8..])?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> TokenHash {
    let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let Some(time) = issue_time(secret) else { return TokenHash(digest) };
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&time);
    out[8..].copy_from_slice(&digest[..24]);
    TokenHash(out)
}

/// The issue-time bytes of a secret of the current form (`lst_`, two or
/// three lowercase letters, `_`, 54 base64url characters).
fn issue_time(secret: &str) -> Option<[u8; 8]> {
    let (kind, body) = secret.strip_prefix("lst_")?.split_once('_')?;
    if !(2..=3).contains(&kind.len())
        || !kind.bytes().all(|b| b.is_ascii_lowercase())
        || body.len() != BODY_CHARS
    {
        return None;
    }
    let mut decoded = [0u8; 9];
    URL_SAFE_NO_PAD.decode_slice(body.get(..TIME_CHARS)?, &mut decoded).ok()?;
    let mut time = [0u8; 8];
    time.copy_from_slice(&decoded[..8]);
    Some(time)
}

/// Compares two hashes in constant time.
pub fn same(a: &TokenHash, b: &TokenHash) -> bool {
    a.0.ct_eq(&b.0).into()
}

/// A version-7 UUID (time-ordered, so ids sort by creation and index well).
pub fn uuid_v7(now: Timestamp, entropy: &dyn Entropy) -> Result<Uuid, EntropyError> {
    let mut random = [0u8; 10];
    entropy.fill(&mut random)?;
    let millis = u64::try_from(now.micros().div_euclid(1_000)).unwrap_or(0);
    Ok(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsEntropy;

    #[test]
    fn secrets_are_prefixed_long_and_distinct() {
        let a = mint(ACCESS_TOKEN_PREFIX, Timestamp(1), &OsEntropy).unwrap();
        let b = mint(ACCESS_TOKEN_PREFIX, Timestamp(1), &OsEntropy).unwrap();
        assert!(a.starts_with("lst_at_"));
        assert_eq!(a.len(), "lst_at_".len() + 54);
        assert_ne!(a, b);
        assert!(same(&hash(&a), &hash(&a)));
        assert!(!same(&hash(&a), &hash(&b)));
    }

    /// Hashes of later secrets sort after earlier ones (the store's index
    /// grows at its end), whatever the prefix; the rest is SHA-256.
    #[test]
    fn hashes_sort_by_issue_time() {
        let times = [Timestamp(0), Timestamp(999), Timestamp(1_000_000), Timestamp(1_800_000_000_000_000)];
        for prefix in [ACCESS_TOKEN_PREFIX, "lst_rt_", "lst_ak_", CLIENT_SECRET_PREFIX, ADMIN_TOKEN_PREFIX] {
            let hashes: Vec<TokenHash> =
                times.iter().map(|t| hash(&mint(prefix, *t, &OsEntropy).unwrap())).collect();
            assert!(hashes.windows(2).all(|w| w[0] < w[1]), "{prefix}");
            let secret = mint(prefix, Timestamp(1_000_000), &OsEntropy).unwrap();
            let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
            let h = hash(&secret);
            assert_eq!(h.0[..8], 1_000_000u64.to_be_bytes());
            assert_eq!(h.0[8..], digest[..24]);
        }
    }

    /// Anything not of the current form (an older secret, a configured
    /// admin token, a JWT, garbage) is hashed with plain SHA-256.
    #[test]
    fn other_secrets_keep_plain_sha256() {
        let old = format!("lst_at_{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
        let long = format!("lst_at_{}", URL_SAFE_NO_PAD.encode([7u8; 40]));
        let cases = [
            old.as_str(),
            "bench-admin-token-0123456789abcdef",
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
            &long[..long.len() - 1],
            "lst_AT_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "lst_toolong_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "lst_at_!!!!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "",
        ];
        for secret in cases {
            let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
            assert_eq!(hash(secret), TokenHash(digest), "{secret}");
        }
        assert_ne!(hash(&long), TokenHash(Sha256::digest(long.as_bytes()).into()));
    }

    #[test]
    fn uuids_are_v7_and_time_ordered() {
        let a = uuid_v7(Timestamp(1_000_000), &OsEntropy).unwrap();
        let b = uuid_v7(Timestamp(2_000_000), &OsEntropy).unwrap();
        assert_eq!(a.get_version_num(), 7);
        assert!(a < b);
    }
}
