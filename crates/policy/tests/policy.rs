//! Property tests of the pure policy function, and the default table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use lockstep_domain::{
    CredentialKind, DirectoryChange, DirectoryEvent, DirectoryEventId, GroupId, IdentityId, IdentityKind,
    IdentityStatus, Origin, RevocationReason, Session, SessionId, SessionState, SourceId, Subject,
    SuspendCondition, Tiers, Timestamp, TokenFormat,
};
use lockstep_policy::{
    Impact, Policy, PolicyConfig, SessionAction, TierConfig, Trigger, evaluate, grace_ended,
};
use proptest::prelude::*;
use uuid::Uuid;

fn identity(n: u8) -> IdentityId {
    IdentityId::from_uuid(Uuid::from_u128(u128::from(n) + 1))
}

const ADMINS: u128 = 900;

fn group(n: u128) -> GroupId {
    GroupId::from_uuid(Uuid::from_u128(n))
}

/// The policy of the example: `prod-admins` confers the privileged tier.
fn with_admins() -> Policy {
    Policy::from_config(&PolicyConfig {
        tiers: vec![(
            "privileged".into(),
            TierConfig { groups: Some(vec!["prod-admins".into()]), ..TierConfig::default() },
        )],
    })
    .unwrap()
}

fn change_strategy() -> impl Strategy<Value = DirectoryChange> {
    let tiers =
        (any::<bool>(), any::<bool>()).prop_map(|(privileged, non_human)| Tiers { privileged, non_human });
    prop_oneof![
        Just(DirectoryChange::IdentityCreated),
        Just(DirectoryChange::IdentityUpdated { changed: vec!["displayName".into()] }),
        Just(DirectoryChange::IdentityDeactivated {
            from: IdentityStatus::Active,
            to: IdentityStatus::Disabled
        }),
        Just(DirectoryChange::IdentityReactivated { from: IdentityStatus::Disabled }),
        Just(DirectoryChange::IdentityDeleted),
        Just(DirectoryChange::AddedToGroup { group: group(1), group_name: "eng".into() }),
        Just(DirectoryChange::RemovedFromGroup { group: group(1), group_name: "eng".into() }),
        Just(DirectoryChange::RemovedFromGroup { group: group(ADMINS), group_name: "Prod-Admins".into() }),
        Just(DirectoryChange::OwnerLost { owner: Some(identity(7)) }),
        Just(DirectoryChange::OwnerRestored { owner: identity(8) }),
        Just(DirectoryChange::OwnerChanged { from: vec![identity(7)], to: vec![identity(8)] }),
        (tiers.clone(), tiers).prop_map(|(from, to)| DirectoryChange::TierChanged { from, to }),
    ]
}

fn state_strategy() -> impl Strategy<Value = SessionState> {
    prop_oneof![
        3 => Just(SessionState::Active),
        1 => Just(SessionState::NeedsRecheck),
        1 => (0i64..3_000).prop_map(|until| SessionState::Suspended {
            at: Timestamp(1),
            condition: SuspendCondition::OwnerLost,
            cause: None,
            until: Some(Timestamp(until)),
        }),
        1 => Just(SessionState::Revoked { at: Timestamp(5), reason: RevocationReason::AdminRevoked, cause: None }),
    ]
}

fn session(id: usize, who: u8, state: SessionState, expires: i64) -> Session {
    Session {
        id: SessionId::from_uuid(Uuid::from_u128(id as u128)),
        identity: identity(who),
        // Mostly sessions, some credentials (revoke_refresh revokes those).
        kind: [
            CredentialKind::Session,
            CredentialKind::Session,
            CredentialKind::ApiKey,
            CredentialKind::ClientSecret,
        ][id % 4],
        format: TokenFormat::Opaque,
        issued_to: None,
        user_name: format!("user{who}"),
        claims_version: 1,
        issued_at: Timestamp(0),
        expires_at: Timestamp(expires),
        last_seen: Timestamp(0),
        state,
    }
}

fn sessions_strategy() -> impl Strategy<Value = Vec<Session>> {
    prop::collection::vec((0u8..3, state_strategy(), 0i64..3_000), 0..30).prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(id, (who, state, expires))| session(id, who, state, expires))
            .collect()
    })
}

fn impact_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("none".to_owned()),
        Just("recheck".to_owned()),
        (0u64..2_000).prop_map(|ms| format!("shorten {ms}ms")),
        Just("revoke_refresh".to_owned()),
        Just("revoke".to_owned()),
    ]
}

/// Any valid policy a configuration file could produce.
fn policy_strategy() -> impl Strategy<Value = Policy> {
    let tier = || {
        (
            prop::collection::vec(impact_strategy(), Trigger::ALL.len()),
            any::<bool>(),
            prop::option::of(1u64..5_000),
            0u64..3_000,
        )
    };
    (tier(), tier(), tier(), any::<bool>()).prop_map(|(s, p, n, groups)| {
        let config = |(impacts, suspend, ttl, grace): (Vec<String>, bool, Option<u64>, u64)| TierConfig {
            session_max_ttl: ttl.map(|t| format!("{t}ms")),
            owner_grace: Some(format!("{grace}ms")),
            impacts: Trigger::ALL
                .iter()
                .zip(impacts)
                .map(|(t, i)| {
                    let i = if *t == Trigger::OwnerLost && suspend { "suspend".to_owned() } else { i };
                    (t.key().to_owned(), i)
                })
                .collect(),
            ..TierConfig::default()
        };
        let mut privileged = config(p);
        if groups {
            privileged.groups = Some(vec!["prod-admins".into()]);
        }
        Policy::from_config(&PolicyConfig {
            tiers: vec![
                ("standard".into(), config(s)),
                ("privileged".into(), privileged),
                ("non_human".into(), config(n)),
            ],
        })
        .unwrap()
    })
}

fn event(change: DirectoryChange, tiers: Tiers) -> DirectoryEvent {
    DirectoryEvent {
        id: DirectoryEventId(7),
        at: Timestamp(900),
        subject: Subject::Identity {
            id: identity(0),
            user_name: "user0".into(),
            kind: if tiers.non_human { IdentityKind::ServiceAccount } else { IdentityKind::Human },
            tiers,
        },
        change,
        origin: Origin { source: SourceId::new("scim"), client: None, source_ref: None },
        cause: None,
    }
}

fn tiers_strategy() -> impl Strategy<Value = Tiers> {
    (any::<bool>(), any::<bool>()).prop_map(|(privileged, non_human)| Tiers { privileged, non_human })
}

fn live_of_subject(sessions: &[Session], now: Timestamp) -> Vec<SessionId> {
    let mut ids: Vec<SessionId> =
        sessions.iter().filter(|s| s.identity == identity(0) && s.is_live(now)).map(|s| s.id).collect();
    ids.sort();
    ids.dedup();
    ids
}

proptest! {
    /// No policy keeps a session of a deactivated or deleted identity alive.
    #[test]
    fn lifecycle_loss_revokes_every_live_session_under_every_policy(
        policy in policy_strategy(),
        sessions in sessions_strategy(),
        deleted in any::<bool>(),
        tiers in tiers_strategy(),
        now in 0i64..3_000,
    ) {
        let change = if deleted {
            DirectoryChange::IdentityDeleted
        } else {
            DirectoryChange::IdentityDeactivated { from: IdentityStatus::Active, to: IdentityStatus::Suspended }
        };
        let now = Timestamp(now);
        let d = evaluate(&event(change, tiers), &policy, &sessions, now);
        let mut revoked: Vec<SessionId> = d.actions.iter().map(|a| {
            let SessionAction::Revoke { session, reason } = a else { panic!("unexpected {a:?}") };
            let expected = if deleted { RevocationReason::IdentityDeleted } else { RevocationReason::IdentityDeactivated };
            assert_eq!(*reason, expected);
            *session
        }).collect();
        revoked.sort();
        prop_assert_eq!(revoked, live_of_subject(&sessions, now));
        prop_assert_eq!(d.reasons.len(), 1);
        prop_assert!(d.rule().starts_with("lifecycle."));
    }

    /// Actions touch only live sessions of the subject, at most once each;
    /// nothing makes a revoked or expired session valid, only a suspended
    /// one is resumed, and no expiry is ever extended.
    #[test]
    fn no_policy_revives_extends_or_strays(
        policy in policy_strategy(),
        sessions in sessions_strategy(),
        change in change_strategy(),
        tiers in tiers_strategy(),
        now in 0i64..3_000,
    ) {
        let now = Timestamp(now);
        let d = evaluate(&event(change, tiers), &policy, &sessions, now);
        let allowed = live_of_subject(&sessions, now);
        let mut touched: Vec<SessionId> = d.actions.iter().map(SessionAction::session).collect();
        for action in &d.actions {
            prop_assert!(allowed.contains(&action.session()));
            let before = sessions.iter().find(|s| s.id == action.session()).unwrap();
            match action {
                SessionAction::ShortenExpiry { expires_at, .. } => prop_assert!(*expires_at < before.expires_at),
                SessionAction::Resume { .. } => prop_assert!(before.state.is_suspended()),
                SessionAction::Suspend { until, .. } => {
                    prop_assert!(!before.state.is_suspended());
                    prop_assert!(until.is_some());
                }
                _ => {}
            }
        }
        let n = touched.len();
        touched.sort();
        touched.dedup();
        prop_assert_eq!(touched.len(), n, "at most one action per session");
        prop_assert_eq!(d.reasons.len(), 1, "every decision cites its rule");
    }

    #[test]
    fn evaluation_is_deterministic(
        policy in policy_strategy(),
        sessions in sessions_strategy(),
        change in change_strategy(),
        tiers in tiers_strategy(),
        now in 0i64..3_000,
    ) {
        let a = evaluate(&event(change.clone(), tiers), &policy, &sessions, Timestamp(now));
        let b = evaluate(&event(change, tiers), &policy, &sessions, Timestamp(now));
        prop_assert_eq!(a, b);
    }

    /// The bridge skips loading sessions for events the policy does not act
    /// on; that is only sound if such events never yield an action.
    #[test]
    fn events_the_policy_does_not_act_on_yield_no_actions(
        policy in policy_strategy(),
        sessions in sessions_strategy(),
        change in change_strategy(),
        tiers in tiers_strategy(),
        now in 0i64..3_000,
    ) {
        let e = event(change, tiers);
        let d = evaluate(&e, &policy, &sessions, Timestamp(now));
        if !policy.acts_on(&e) || !policy.kind_acts(e.change.kind()) {
            prop_assert!(d.actions.is_empty(), "{:?}", d);
        }
    }

    /// A lifetime cap never extends and never moves an expiry into the past.
    #[test]
    fn caps_never_extend(
        policy in policy_strategy(),
        sessions in sessions_strategy(),
        tiers in tiers_strategy(),
        now in 0i64..3_000,
    ) {
        let now = Timestamp(now);
        for s in &sessions {
            if let Some(capped) = policy.capped_expiry(s, tiers, now) {
                prop_assert!(capped < s.expires_at);
                prop_assert!(capped >= now);
                prop_assert!(s.is_live(now));
            }
            if let Some(action) = grace_ended(s, now) {
                prop_assert!(s.state.is_suspended() && s.is_live(now));
                let revokes = matches!(action, SessionAction::Revoke { .. });
                prop_assert!(revokes);
            }
        }
    }

    /// In two tiers, each setting is the stricter of the two.
    #[test]
    fn two_tiers_take_the_stricter_setting(policy in policy_strategy()) {
        let both = policy.effective(Tiers { privileged: true, non_human: true });
        let p = policy.effective(Tiers { privileged: true, non_human: false });
        let n = policy.effective(Tiers { privileged: false, non_human: true });
        for t in Trigger::ALL {
            prop_assert_eq!(both.impact(*t).0, p.impact(*t).0.stricter(n.impact(*t).0));
        }
        prop_assert_eq!(both.owner_grace.0, p.owner_grace.0.min(n.owner_grace.0));
        let ttl = |e: &lockstep_policy::Effective| e.session_max_ttl.map(|x| x.0);
        let expected = match (ttl(p), ttl(n)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        prop_assert_eq!(ttl(both), expected);
    }
}

// ---- the default table (README), pinned ------------------------------------

fn decide(policy: &Policy, change: DirectoryChange, tiers: Tiers) -> (Vec<SessionAction>, String) {
    let sessions = vec![session(1, 0, SessionState::Active, 1_000_000_000)];
    let d = evaluate(&event(change, tiers), policy, &sessions, Timestamp(1_000));
    (d.actions.clone(), d.rule().to_owned())
}

const STANDARD: Tiers = Tiers { privileged: false, non_human: false };
const PRIVILEGED: Tiers = Tiers { privileged: true, non_human: false };
const NON_HUMAN: Tiers = Tiers { privileged: false, non_human: true };
const BOTH: Tiers = Tiers { privileged: true, non_human: true };

fn is_revoke(actions: &[SessionAction]) -> bool {
    matches!(actions, [SessionAction::Revoke { .. }])
}

#[test]
fn default_lifecycle_and_group_rows() {
    let policy = with_admins();
    for tiers in [STANDARD, PRIVILEGED, NON_HUMAN, BOTH] {
        let deactivated = DirectoryChange::IdentityDeactivated {
            from: IdentityStatus::Active,
            to: IdentityStatus::Disabled,
        };
        assert!(is_revoke(&decide(&policy, deactivated, tiers).0));
        assert!(is_revoke(&decide(&policy, DirectoryChange::IdentityDeleted, tiers).0));
        // Removed from the group that confers the tier: revoke (matched by name, ignoring case).
        let removed =
            DirectoryChange::RemovedFromGroup { group: group(ADMINS), group_name: "PROD-ADMINS".into() };
        let (actions, rule) = decide(&policy, removed, tiers);
        assert!(is_revoke(&actions), "{tiers:?}");
        assert!(rule.ends_with(".on_tier_group_removed"), "{rule}");
        for other in [
            DirectoryChange::RemovedFromGroup { group: group(1), group_name: "eng".into() },
            DirectoryChange::AddedToGroup { group: group(1), group_name: "eng".into() },
            DirectoryChange::AddedToGroup { group: group(ADMINS), group_name: "prod-admins".into() },
        ] {
            assert!(matches!(decide(&policy, other, tiers).0[..], [SessionAction::MarkForRecheck { .. }]));
        }
        assert!(
            decide(&policy, DirectoryChange::IdentityReactivated { from: IdentityStatus::Disabled }, tiers)
                .0
                .is_empty()
        );
    }
}

#[test]
fn default_attribute_and_tier_rows() {
    let policy = Policy::default();
    let updated = || DirectoryChange::IdentityUpdated { changed: vec!["title".into()] };
    assert!(decide(&policy, updated(), STANDARD).0.is_empty());
    let (actions, rule) = decide(&policy, updated(), PRIVILEGED);
    assert_eq!(
        actions,
        vec![SessionAction::ShortenExpiry {
            session: SessionId::from_uuid(Uuid::from_u128(1)),
            expires_at: Timestamp(900 + 300_000_000),
        }]
    );
    assert_eq!(rule, "privileged.on_attributes_changed");
    assert!(matches!(decide(&policy, updated(), NON_HUMAN).0[..], [SessionAction::MarkForRecheck { .. }]));
    // Both: the stricter (shorten beats recheck).
    assert!(matches!(decide(&policy, updated(), BOTH).0[..], [SessionAction::ShortenExpiry { .. }]));
    let gained = |to| DirectoryChange::TierChanged { from: STANDARD, to };
    assert!(matches!(
        decide(&policy, gained(PRIVILEGED), PRIVILEGED).0[..],
        [SessionAction::ShortenExpiry { .. }]
    ));
    assert!(matches!(
        decide(&policy, gained(NON_HUMAN), NON_HUMAN).0[..],
        [SessionAction::ShortenExpiry { .. }]
    ));
    // Lifetimes: 12h standard, 1h privileged, none of their own for non-human.
    let hour = Duration::from_secs(3600);
    assert_eq!(policy.session_cap(STANDARD).map(|c| c.0), Some(12 * hour));
    assert_eq!(policy.session_cap(PRIVILEGED).map(|c| c.0), Some(hour));
    assert_eq!(policy.session_cap(NON_HUMAN), None);
    assert_eq!(policy.session_cap(BOTH).map(|c| c.0), Some(hour));
}

#[test]
fn default_owner_rows() {
    let policy = Policy::default();
    let lost = || DirectoryChange::OwnerLost { owner: Some(identity(7)) };
    for tiers in [STANDARD, PRIVILEGED] {
        assert!(decide(&policy, lost(), tiers).0.is_empty(), "{tiers:?}");
    }
    // Non-human: suspended for a 24h grace…
    let (actions, rule) = decide(&policy, lost(), NON_HUMAN);
    assert_eq!(rule, "non_human.on_owner_lost");
    let [SessionAction::Suspend { until: Some(until), condition: SuspendCondition::OwnerLost, .. }] =
        actions[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(until, Timestamp(900).plus(Duration::from_secs(24 * 3600)));
    // …privileged non-human: no grace, revoked at once.
    let (actions, rule) = decide(&policy, lost(), BOTH);
    assert!(matches!(actions[..], [SessionAction::Revoke { reason: RevocationReason::OwnerLost, .. }]));
    assert_eq!(rule, "privileged.owner_grace");
    // A new active owner within the grace lifts it; when the grace ends, it is revoked.
    let suspended = session(
        1,
        0,
        SessionState::Suspended {
            at: Timestamp(900),
            condition: SuspendCondition::OwnerLost,
            cause: None,
            until: Some(until),
        },
        1_000_000_000_000,
    );
    let restored = event(DirectoryChange::OwnerRestored { owner: identity(8) }, NON_HUMAN);
    let d = evaluate(&restored, &policy, std::slice::from_ref(&suspended), Timestamp(1_000));
    assert!(matches!(d.actions[..], [SessionAction::Resume { .. }]));
    assert_eq!(grace_ended(&suspended, Timestamp(until.0 - 1)), None);
    assert!(matches!(
        grace_ended(&suspended, until),
        Some(SessionAction::Revoke { reason: RevocationReason::OwnerLost, .. })
    ));
    let changed = DirectoryChange::OwnerChanged { from: vec![identity(7)], to: vec![identity(8)] };
    assert!(matches!(
        decide(&policy, changed.clone(), NON_HUMAN).0[..],
        [SessionAction::MarkForRecheck { .. }]
    ));
    assert!(decide(&policy, changed, STANDARD).0.is_empty());
}

#[test]
fn configuration_errors_name_the_key_and_cannot_weaken_lifecycle() {
    let with = |tier: &str, key: &str, value: &str| {
        Policy::from_config(&PolicyConfig {
            tiers: vec![(
                tier.into(),
                TierConfig { impacts: vec![(key.into(), value.into())], ..TierConfig::default() },
            )],
        })
    };
    for key in ["on_deactivated", "on_deleted"] {
        for value in ["none", "recheck", "shorten 1m", "revoke_refresh", "suspend"] {
            let err = with("non_human", key, value).unwrap_err();
            assert_eq!(err.key, format!("policy.tiers.non_human.{key}"));
        }
        assert!(with("standard", key, "revoke").is_ok());
    }
    let err = with("standard", "on_attributes_changed", "suspend").unwrap_err();
    assert_eq!(err.key, "policy.tiers.standard.on_attributes_changed");
    let err = with("privileged", "on_attribute_changed", "revoke").unwrap_err();
    assert!(err.message.contains("on_attributes_changed"), "{err}");
    let err = with("privileged", "on_owner_lost", "shorten").unwrap_err();
    assert!(err.message.contains("duration"), "{err}");
    let err = with("admins", "on_owner_lost", "revoke").unwrap_err();
    assert_eq!(err.key, "policy.tiers.admins");
    let err = Policy::from_config(&PolicyConfig {
        tiers: vec![(
            "standard".into(),
            TierConfig { groups: Some(vec!["x".into()]), ..TierConfig::default() },
        )],
    })
    .unwrap_err();
    assert_eq!(err.key, "policy.tiers.standard.groups");
    let err = Policy::from_config(&PolicyConfig {
        tiers: vec![(
            "privileged".into(),
            TierConfig { session_max_ttl: Some("forever".into()), ..TierConfig::default() },
        )],
    })
    .unwrap_err();
    assert_eq!(err.key, "policy.tiers.privileged.session_max_ttl");
}

#[test]
fn tiers_are_derived_from_risk_tier_kind_and_groups() {
    use lockstep_domain::RiskTier;
    let policy = with_admins();
    let none: [(GroupId, &str); 0] = [];
    assert_eq!(policy.tiers_of(IdentityKind::Human, None, none), STANDARD);
    assert_eq!(policy.tiers_of(IdentityKind::Human, Some(RiskTier::Privileged), none), PRIVILEGED);
    assert_eq!(policy.tiers_of(IdentityKind::Human, None, [(group(ADMINS), "ｐｒｏｄ-admins")]), PRIVILEGED);
    assert_eq!(policy.tiers_of(IdentityKind::Human, None, [(group(1), "eng")]), STANDARD);
    assert_eq!(policy.tiers_of(IdentityKind::Agent, None, none), NON_HUMAN);
    assert_eq!(policy.tiers_of(IdentityKind::ServiceAccount, None, [(group(ADMINS), "prod-admins")]), BOTH);
    assert_eq!(policy.tiers_of(IdentityKind::Human, Some(RiskTier::NonHuman), none), NON_HUMAN);
    // By id as well as by name.
    let by_id = Policy::from_config(&PolicyConfig {
        tiers: vec![(
            "privileged".into(),
            TierConfig { groups: Some(vec![group(ADMINS).to_string()]), ..TierConfig::default() },
        )],
    })
    .unwrap();
    assert_eq!(by_id.tiers_of(IdentityKind::Human, None, [(group(ADMINS), "renamed")]), PRIVILEGED);
    assert_ne!(Policy::default().canonical(), policy.canonical());
    assert_eq!(with_admins().canonical(), policy.canonical());
    let _ = Impact::None;
}
