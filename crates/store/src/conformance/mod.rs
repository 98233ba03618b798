//! The conformance suite every backend runs.
//!
//! Each check takes freshly opened, empty stores. `model_check_*` drive a
//! backend and the in-memory model with the same random operation sequence
//! and require identical observable results. A backend's test binary calls
//! [`crate::conformance_suite!`] with a function that opens empty stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use lockstep_domain::{
    Actor, AuditEntry, AuditKind, ClientId, CredentialKind, DirectoryChange, Identity, IdentityId, Origin,
    Session, SessionId, SessionState, SourceId, Tiers, Timestamp, Token, TokenFormat, TokenHash, TokenKind,
};
use uuid::Uuid;

use crate::{DirectoryStore, IdentityWrite};

mod directory;
mod model;
mod sessions;

pub use directory::*;
pub use model::*;
pub use sessions::*;

pub fn identity_id(n: u128) -> IdentityId {
    IdentityId::from_uuid(Uuid::from_u128(n + 1))
}

pub fn session_id(n: u128) -> SessionId {
    SessionId::from_uuid(Uuid::from_u128(n + 1))
}

pub fn origin() -> Origin {
    Origin { source: SourceId::new("scim"), client: None, source_ref: Some("ext-1".into()) }
}

pub fn identity(n: u128, user_name: &str) -> Identity {
    Identity {
        external_id: Some(format!("ext-{n}")),
        display_name: Some(format!("User {n}")),
        profile: "{\"name\":{\"givenName\":\"Ann\"}}".into(),
        created: Timestamp(1_000),
        modified: Timestamp(1_000),
        ..Identity::draft(identity_id(n), user_name, lockstep_domain::SourceId::scim())
    }
}

pub fn create<D: DirectoryStore + ?Sized>(d: &D, n: u128, user_name: &str) -> Identity {
    commit_new(d, identity(n, user_name))
}

/// Commits `identity` as created (standard tier, no fan-out).
pub fn commit_new<D: DirectoryStore + ?Sized>(d: &D, identity: Identity) -> Identity {
    d.commit_identity(IdentityWrite {
        identity,
        tiers: Tiers::STANDARD,
        fanout: Vec::new(),
        expected_version: None,
        changes: vec![DirectoryChange::IdentityCreated],
        origin: origin(),
        at: Timestamp(1_000),
    })
    .unwrap()
    .identity
}

/// An event of a write, caused by nothing else in it.
pub fn ev(subject: lockstep_domain::Subject, change: DirectoryChange) -> crate::NewEvent {
    crate::NewEvent { subject, change, caused_by: None }
}

pub fn session(n: u128, who: IdentityId, expires: i64) -> Session {
    Session {
        id: session_id(n),
        identity: who,
        kind: CredentialKind::Session,
        format: TokenFormat::Opaque,
        issued_to: Some(ClientId::from_uuid(Uuid::from_u128(77))),
        user_name: "alice".into(),
        claims_version: 1,
        issued_at: Timestamp(10),
        expires_at: Timestamp(expires),
        last_seen: Timestamp(10),
        state: SessionState::Active,
    }
}

/// The access token of `session(n, …)`: hash `[n; 32]`, expiring with it.
pub fn token(n: u128, session: &Session) -> Token {
    Token {
        hash: TokenHash([n as u8; 32]),
        session: session.id,
        kind: TokenKind::Access,
        issued_at: session.issued_at,
        expires_at: session.expires_at,
        retired_at: None,
    }
}

pub fn audit(kind: AuditKind, session: Option<SessionId>) -> AuditEntry {
    AuditEntry {
        at: Timestamp(42),
        kind,
        identity: Some(identity_id(0)),
        user_name: Some("alice".into()),
        session,
        directory_event: None,
        actor: Actor::Admin,
        detail: "because".into(),
    }
}

/// Generates one `#[test]` per conformance check. `$open_dir` and
/// `$open_sessions` are expressions that open fresh, empty stores.
#[macro_export]
macro_rules! conformance_suite {
    (directory: $open_dir:expr, sessions: $open_sessions:expr, cases: $cases:expr) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance as c;

            #[test]
            fn identity_round_trip() {
                c::identity_round_trip(&$open_dir);
            }
            #[test]
            fn batches_read_then_commit_or_end() {
                c::batches_read_then_commit_or_end(&$open_dir);
            }
            #[test]
            fn user_names_are_unique_case_insensitively() {
                c::user_names_are_unique_case_insensitively(&$open_dir);
            }
            #[test]
            fn tombstones_free_the_user_name() {
                c::tombstones_free_the_user_name(&$open_dir);
            }
            #[test]
            fn stale_versions_are_refused_without_partial_write() {
                c::stale_versions_are_refused_without_partial_write(&$open_dir);
            }
            #[test]
            fn events_are_ordered_and_carry_their_origin() {
                c::events_are_ordered_and_carry_their_origin(&$open_dir);
            }
            #[test]
            fn filters_and_paging() {
                c::filters_and_paging(&$open_dir);
            }
            #[test]
            fn groups_and_membership() {
                c::groups_and_membership(&$open_dir);
            }
            #[test]
            fn group_commit_isolates_failures() {
                c::group_commit_isolates_failures(&$open_dir);
            }
            #[test]
            fn owners_tiers_and_fanout_causes() {
                c::owners_tiers_and_fanout_causes(&$open_dir);
            }
            #[test]
            fn sources_own_their_objects_and_state() {
                c::sources_own_their_objects_and_state(&$open_dir);
            }
            #[test]
            fn identities_with_groups_in_order() {
                c::identities_with_groups_in_order(&$open_dir);
            }
            #[test]
            fn tokens_retire_and_purge() {
                c::tokens_retire_and_purge(&$open_sessions);
            }
            #[test]
            fn batched_inserts_suspensions_and_last_seen() {
                c::batched_inserts_suspensions_and_last_seen(&$open_sessions);
            }
            #[test]
            fn signals_outbox_commits_with_the_batch() {
                c::signals_outbox_commits_with_the_batch(&$open_sessions);
            }
            #[test]
            fn sessions_round_trip() {
                c::sessions_round_trip(&$open_sessions);
            }
            #[test]
            fn batches_are_atomic_with_the_cursor() {
                c::batches_are_atomic_with_the_cursor(&$open_sessions);
            }
            #[test]
            fn revoked_is_terminal() {
                c::revoked_is_terminal(&$open_sessions);
            }
            #[test]
            fn audit_chain_verifies_and_pages() {
                c::audit_chain_verifies_and_pages(&$open_sessions);
            }
            #[test]
            fn credentials_round_trip() {
                c::credentials_round_trip(&$open_sessions);
            }
            #[test]
            fn model_check_directory() {
                c::model_check_directory(|| $open_dir, $cases);
            }
            #[test]
            fn model_check_search() {
                // Cheap per case, and the space (filters × data) is large.
                c::model_check_search(|| $open_dir, $cases * 4);
            }
            #[test]
            fn model_check_sessions() {
                c::model_check_sessions(|| $open_sessions, $cases);
            }
        }
    };
}
