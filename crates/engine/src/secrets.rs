//! Minting and hashing bearer secrets.
//!
//! A secret is a type prefix plus 32 random bytes in unpadded base64url. The
//! prefix (`lst_at_`, `lst_cs_`, `lst_adm_`) lets secret scanners recognise a
//! leaked Lockstep credential and tells operators what it is; the random
//! part alone carries the 256 bits. Only SHA-256 of the whole string is ever
//! stored.

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

/// Mints a new secret with `prefix`.
pub fn mint(prefix: &str, entropy: &dyn Entropy) -> Result<String, EntropyError> {
    let mut bytes = [0u8; 32];
    entropy.fill(&mut bytes)?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> TokenHash {
    TokenHash(Sha256::digest(secret.as_bytes()).into())
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
        let a = mint(ACCESS_TOKEN_PREFIX, &OsEntropy).unwrap();
        let b = mint(ACCESS_TOKEN_PREFIX, &OsEntropy).unwrap();
        assert!(a.starts_with("lst_at_"));
        assert_eq!(a.len(), "lst_at_".len() + 43);
        assert_ne!(a, b);
        assert!(same(&hash(&a), &hash(&a)));
        assert!(!same(&hash(&a), &hash(&b)));
    }

    #[test]
    fn uuids_are_v7_and_time_ordered() {
        let a = uuid_v7(Timestamp(1_000_000), &OsEntropy).unwrap();
        let b = uuid_v7(Timestamp(2_000_000), &OsEntropy).unwrap();
        assert_eq!(a.get_version_num(), 7);
        assert!(a < b);
    }
}
