//! Property tests of the pure policy function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use lockstep_domain::{
    ChangeKind, CredentialKind, DirectoryChange, DirectoryEvent, DirectoryEventId, IdentityId, IdentityKind,
    IdentityStatus, Origin, RevocationReason, Session, SessionId, SessionState, SourceId, Subject, Timestamp,
    TokenHash,
};
use lockstep_policy::{Impact, Policy, PolicyError, Rule, SessionAction, evaluate};
use proptest::prelude::*;
use uuid::Uuid;

fn identity(n: u8) -> IdentityId {
    IdentityId::from_uuid(Uuid::from_u128(u128::from(n) + 1))
}

fn change_strategy() -> impl Strategy<Value = DirectoryChange> {
    prop_oneof![
        Just(DirectoryChange::IdentityCreated),
        Just(DirectoryChange::IdentityUpdated { changed: vec!["displayName".into()] }),
        Just(DirectoryChange::IdentityDeactivated {
            from: IdentityStatus::Active,
            to: IdentityStatus::Disabled
        }),
        Just(DirectoryChange::IdentityReactivated { from: IdentityStatus::Disabled }),
        Just(DirectoryChange::IdentityDeleted),
    ]
}

fn state_strategy() -> impl Strategy<Value = SessionState> {
    prop_oneof![
        3 => Just(SessionState::Active),
        1 => Just(SessionState::NeedsRecheck),
        1 => Just(SessionState::Revoked {
            at: Timestamp(5),
            reason: RevocationReason::AdminRevoked,
            cause: None
        }),
    ]
}

fn sessions_strategy() -> impl Strategy<Value = Vec<Session>> {
    prop::collection::vec((0u8..3, state_strategy(), 0i64..2_000), 0..30).prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(id, (who, state, expires))| Session {
                id: SessionId::from_uuid(Uuid::from_u128(id as u128)),
                identity: identity(who),
                kind: CredentialKind::AccessToken,
                token_hash: TokenHash([id as u8; 32]),
                client: None,
                user_name: format!("user{who}"),
                claims_version: 1,
                issued_at: Timestamp(0),
                expires_at: Timestamp(expires),
                state,
            })
            .collect()
    })
}

fn event(change: DirectoryChange) -> DirectoryEvent {
    DirectoryEvent {
        id: DirectoryEventId(7),
        at: Timestamp(900),
        subject: Subject::Identity { id: identity(0), user_name: "user0".into(), kind: IdentityKind::Human },
        change,
        origin: Origin { source: SourceId::new("scim"), client: None, source_ref: None },
    }
}

fn live_of_subject(sessions: &[Session], now: Timestamp) -> Vec<SessionId> {
    let mut ids: Vec<SessionId> =
        sessions.iter().filter(|s| s.identity == identity(0) && s.is_live(now)).map(|s| s.id).collect();
    ids.sort();
    ids.dedup();
    ids
}

proptest! {
    #[test]
    fn lifecycle_loss_revokes_every_live_session_of_the_subject(
        sessions in sessions_strategy(),
        deleted in any::<bool>(),
        now in 0i64..2_000,
    ) {
        let change = if deleted {
            DirectoryChange::IdentityDeleted
        } else {
            DirectoryChange::IdentityDeactivated { from: IdentityStatus::Active, to: IdentityStatus::Suspended }
        };
        let now = Timestamp(now);
        let d = evaluate(&event(change), &Policy::default_rules(), &sessions, now);
        let mut revoked: Vec<SessionId> = d.actions.iter().map(|a| {
            let SessionAction::Revoke { session, reason } = a else { panic!("unexpected {a:?}") };
            let expected = if deleted { RevocationReason::IdentityDeleted } else { RevocationReason::IdentityDeactivated };
            assert_eq!(*reason, expected);
            *session
        }).collect();
        revoked.sort();
        prop_assert_eq!(revoked, live_of_subject(&sessions, now));
        prop_assert_eq!(d.reasons.len(), 1);
    }

    #[test]
    fn never_touches_other_identities_or_dead_sessions(
        sessions in sessions_strategy(),
        change in change_strategy(),
        now in 0i64..2_000,
    ) {
        let now = Timestamp(now);
        let d = evaluate(&event(change), &Policy::default_rules(), &sessions, now);
        let allowed = live_of_subject(&sessions, now);
        let mut touched: Vec<SessionId> = d.actions.iter().map(SessionAction::session).collect();
        for id in &touched {
            prop_assert!(allowed.contains(id));
        }
        let n = touched.len();
        touched.sort();
        touched.dedup();
        prop_assert_eq!(touched.len(), n, "at most one action per session");
    }

    #[test]
    fn reactivation_and_updates_do_nothing_under_the_default_policy(
        sessions in sessions_strategy(),
        now in 0i64..2_000,
        which in 0usize..3,
    ) {
        let change = [
            DirectoryChange::IdentityReactivated { from: IdentityStatus::Disabled },
            DirectoryChange::IdentityCreated,
            DirectoryChange::IdentityUpdated { changed: vec!["userName".into()] },
        ][which].clone();
        let d = evaluate(&event(change), &Policy::default_rules(), &sessions, Timestamp(now));
        prop_assert!(d.actions.is_empty());
    }

    #[test]
    fn shortening_never_extends(
        sessions in sessions_strategy(),
        ttl in 0u64..3_000,
        now in 0i64..2_000,
    ) {
        let policy = Policy::new(vec![Rule {
            name: "shorten-on-update".into(),
            on: ChangeKind::IdentityUpdated,
            impact: Impact::ShortenTtl(Duration::from_micros(ttl)),
        }]).unwrap();
        let now = Timestamp(now);
        let d = evaluate(&event(DirectoryChange::IdentityUpdated { changed: vec![] }), &policy, &sessions, now);
        for action in &d.actions {
            let SessionAction::ShortenExpiry { session, expires_at } = action else { panic!() };
            let before = sessions.iter().find(|s| s.id == *session).unwrap();
            prop_assert!(*expires_at < before.expires_at);
            prop_assert!(*expires_at >= now);
        }
    }

    #[test]
    fn evaluation_is_deterministic(
        sessions in sessions_strategy(),
        change in change_strategy(),
        now in 0i64..2_000,
    ) {
        let a = evaluate(&event(change.clone()), &Policy::default_rules(), &sessions, Timestamp(now));
        let b = evaluate(&event(change), &Policy::default_rules(), &sessions, Timestamp(now));
        prop_assert_eq!(a, b);
    }

    /// The bridge skips loading sessions for kinds the policy does not act
    /// on; that is only sound if such kinds never yield an action.
    #[test]
    fn kinds_the_policy_does_not_act_on_yield_no_actions(
        sessions in sessions_strategy(),
        change in change_strategy(),
        now in 0i64..2_000,
        shorten in any::<bool>(),
    ) {
        let policy = if shorten {
            Policy::new(vec![Rule {
                name: "shorten-on-update".into(),
                on: ChangeKind::IdentityUpdated,
                impact: Impact::ShortenTtl(Duration::from_micros(10)),
            }]).unwrap()
        } else {
            Policy::default_rules()
        };
        let kind = change.kind();
        let d = evaluate(&event(change), &policy, &sessions, Timestamp(now));
        if !policy.acts_on(kind) {
            prop_assert!(d.actions.is_empty());
        }
    }
}

#[test]
fn policy_cannot_weaken_lifecycle_revocation() {
    let err = Policy::new(vec![Rule {
        name: "lenient".into(),
        on: ChangeKind::IdentityDeactivated,
        impact: Impact::MarkForRecheck,
    }])
    .unwrap_err();
    assert_eq!(err, PolicyError::WeakensLifecycleRevocation { rule: "lenient".into() });
}

#[test]
fn duplicate_rules_are_rejected() {
    let rule = Rule { name: "a".into(), on: ChangeKind::IdentityUpdated, impact: Impact::Nothing };
    assert_eq!(
        Policy::new(vec![rule.clone(), rule]).unwrap_err(),
        PolicyError::DuplicateRule { on: ChangeKind::IdentityUpdated }
    );
}

#[test]
fn an_empty_policy_still_fails_closed_on_deletion() {
    let policy = Policy::new(vec![]).unwrap();
    let session = Session {
        id: SessionId::from_uuid(Uuid::from_u128(9)),
        identity: identity(0),
        kind: CredentialKind::AccessToken,
        token_hash: TokenHash([1; 32]),
        client: None,
        user_name: "user0".into(),
        claims_version: 1,
        issued_at: Timestamp(0),
        expires_at: Timestamp(10_000),
        state: SessionState::Active,
    };
    let d = evaluate(&event(DirectoryChange::IdentityDeleted), &policy, &[session], Timestamp(1));
    assert_eq!(d.actions.len(), 1);
    assert_eq!(d.reasons[0].rule, "lifecycle-floor");
}
