//! The tamper-evident audit chain, shared by every backend so that a log
//! written by one can be verified by any.

use lockstep_domain::{AuditEntry, AuditRecord, ChainHash};
use sha2::{Digest, Sha256};

/// Computes the hash of record `seq` holding `entry` after `prev`.
///
/// The encoding is length-prefixed field by field, so no two different
/// entries can encode to the same bytes.
pub fn seal(prev: &ChainHash, seq: u64, entry: &AuditEntry) -> ChainHash {
    // Ids are hashed in their hyphenated text form, encoded on the stack:
    // a mass revocation seals a hundred thousand records.
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let mut h = Sha256::new();
    h.update(b"lockstep-audit-v1");
    h.update(prev.0);
    h.update(seq.to_be_bytes());
    h.update(entry.at.micros().to_be_bytes());
    field(&mut h, entry.kind.as_str().as_bytes());
    opt(&mut h, entry.identity.map(|i| &*i.as_uuid().hyphenated().encode_lower(&mut buf)).map(str::as_bytes));
    opt(&mut h, entry.user_name.as_deref().map(str::as_bytes));
    opt(&mut h, entry.session.map(|s| &*s.as_uuid().hyphenated().encode_lower(&mut buf)).map(str::as_bytes));
    opt(&mut h, entry.directory_event.map(|e| e.0.to_string()).as_deref().map(str::as_bytes));
    field(&mut h, entry.actor.to_string().as_bytes());
    field(&mut h, entry.detail.as_bytes());
    ChainHash(h.finalize().into())
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn opt(h: &mut Sha256, value: Option<&[u8]>) {
    match value {
        None => h.update([0u8]),
        Some(v) => {
            h.update([1u8]);
            field(h, v);
        }
    }
}

/// Where and why a chain failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at record {seq}: {problem}")]
pub struct ChainBreak {
    /// The first bad record.
    pub seq: u64,
    /// What is wrong with it.
    pub problem: String,
}

/// Checks records (oldest first, starting at seq 1) link up and hash right.
/// Returns how many records were checked.
pub fn verify_chain(records: impl IntoIterator<Item = AuditRecord>) -> Result<u64, ChainBreak> {
    let mut prev = ChainHash::GENESIS;
    let mut expected_seq = 1u64;
    for record in records {
        if record.seq != expected_seq {
            return Err(ChainBreak {
                seq: record.seq,
                problem: format!("expected record {expected_seq} (a record is missing)"),
            });
        }
        if record.prev_hash != prev {
            return Err(ChainBreak {
                seq: record.seq,
                problem: "does not link to the previous record".into(),
            });
        }
        if seal(&prev, record.seq, &record.entry) != record.hash {
            return Err(ChainBreak { seq: record.seq, problem: "content does not match its hash".into() });
        }
        prev = record.hash;
        expected_seq += 1;
    }
    Ok(expected_seq - 1)
}
