//! Model checks: a backend and the in-memory model driven by the same
//! random operations must answer alike.

use lockstep_domain::{
    AuditKind, DirectoryChange, DirectoryEventId, IdentityKind, IdentityStatus, RevocationReason,
    SessionState, Tiers, Timestamp,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::{audit, identity, identity_id, origin, session, session_id, token};
use crate::{
    DirectoryStore, Filter, IdentityField, IdentityFilter, IdentityQuery, IdentityWrite, MemoryDirectory,
    MemorySessions, SessionBatch, SessionStore, SessionUpdate, TextOp, verify_chain,
};

// ---- model checks -----------------------------------------------------------

#[derive(Clone, Debug)]
enum DirOp {
    Create { n: u8, name: u8 },
    Update { n: u8, name: u8, status: u8, stale: bool },
    ByName { name: u8 },
    List { offset: u8, limit: u8 },
    Events { after: u8 },
    Own { n: u8, owners: Vec<u8>, risk: Option<u8> },
    OwnedBy { owner: u8 },
}

fn dir_op() -> impl Strategy<Value = DirOp> {
    prop_oneof![
        (0u8..6, 0u8..4).prop_map(|(n, name)| DirOp::Create { n, name }),
        (0u8..6, 0u8..4, 0u8..4, any::<bool>())
            .prop_map(|(n, name, status, stale)| { DirOp::Update { n, name, status, stale } }),
        (0u8..4).prop_map(|name| DirOp::ByName { name }),
        (0u8..4, 0u8..4).prop_map(|(offset, limit)| DirOp::List { offset, limit }),
        (0u8..8).prop_map(|after| DirOp::Events { after }),
        (0u8..6, prop::collection::vec(0u8..6, 0..3), prop::option::of(0u8..3))
            .prop_map(|(n, owners, risk)| DirOp::Own { n, owners, risk }),
        (0u8..6).prop_map(|owner| DirOp::OwnedBy { owner }),
    ]
}

fn run_dir_op<D: DirectoryStore + ?Sized>(d: &D, op: &DirOp) -> String {
    let name = |k: u8| ["ann", "Ann", "bob", "cy"][k as usize].to_owned();
    match op {
        DirOp::Create { n, name: k } => format!(
            "{:?}",
            d.commit_identity(IdentityWrite {
                identity: identity(u128::from(*n), &name(*k)),
                tiers: Tiers::STANDARD,
                fanout: Vec::new(),
                expected_version: None,
                changes: vec![DirectoryChange::IdentityCreated],
                origin: origin(),
                at: Timestamp(1_000),
            })
        ),
        DirOp::Update { n, name: k, status, stale } => {
            let current = d.identity(identity_id(u128::from(*n))).unwrap();
            let Some(mut next) = current.clone() else {
                return "absent".into();
            };
            next.user_name = name(*k);
            next.status = IdentityStatus::ALL[*status as usize];
            let expected = if *stale { Some(next.version + 3) } else { Some(next.version) };
            let changes = lockstep_domain::diff_identity(current.as_ref(), &next);
            if changes.is_empty() {
                return "no change".into();
            }
            format!(
                "{:?}",
                d.commit_identity(IdentityWrite {
                    identity: next,
                    tiers: Tiers::STANDARD,
                    fanout: Vec::new(),
                    expected_version: expected,
                    changes,
                    origin: origin(),
                    at: Timestamp(2_000),
                })
            )
        }
        DirOp::ByName { name: k } => format!(
            "{:?} {:?}",
            d.live_identity_by_user_name(&name(*k)),
            d.deleted_user_name_exists(&name(*k))
        ),
        DirOp::List { offset, limit } => format!(
            "{:?}",
            d.list_identities(&IdentityQuery {
                filter: IdentityFilter::All,
                offset: usize::from(*offset),
                limit: usize::from(*limit),
            })
        ),
        DirOp::Own { n, owners, risk } => {
            let current = d.identity(identity_id(u128::from(*n))).unwrap();
            let Some(mut next) = current.clone() else {
                return "absent".into();
            };
            next.owners = owners.iter().map(|o| identity_id(u128::from(*o))).collect();
            next.owners.sort();
            next.owners.dedup();
            next.risk_tier = risk.map(|r| lockstep_domain::RiskTier::ALL[usize::from(r)]);
            let changes = lockstep_domain::diff_identity(current.as_ref(), &next);
            if changes.is_empty() {
                return "no change".into();
            }
            let tiers = Tiers { privileged: *n % 2 == 0, non_human: *n % 3 == 0 };
            format!(
                "{:?}",
                d.commit_identity(IdentityWrite {
                    expected_version: Some(next.version),
                    identity: next,
                    tiers,
                    changes,
                    fanout: Vec::new(),
                    origin: origin(),
                    at: Timestamp(3_000),
                })
            )
        }
        DirOp::OwnedBy { owner } => format!("{:?}", d.owned_by(identity_id(u128::from(*owner)))),
        DirOp::Events { after } => {
            format!("{:?}", d.events_after((*after > 0).then_some(DirectoryEventId(u64::from(*after))), 3))
        }
    }
}

/// Random operation sequences give the same results on `open()` as on the
/// in-memory model.
pub fn model_check_directory<D: DirectoryStore>(open: impl Fn() -> D, cases: u32) {
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    runner
        .run(&prop::collection::vec(dir_op(), 1..25), |ops| {
            let model = MemoryDirectory::new();
            let real = open();
            for op in &ops {
                prop_assert_eq!(run_dir_op(&model, op), run_dir_op(&real, op), "op {:?}", op);
            }
            Ok(())
        })
        .unwrap();
}

/// Search keys of one generated identity.
#[derive(Clone, Debug)]
struct Keys {
    user_name: String,
    display_name: Option<String>,
    external_id: Option<String>,
    emails: Vec<String>,
    status: u8,
    kind: u8,
}

/// Short strings over an alphabet with case pairs, a non-ASCII letter and
/// e-mail punctuation, so that filters hit, miss and fold often.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!['a', 'A', 'b', 'é', 'É', '@', '.', '"']), 0..max)
        .prop_map(|cs| cs.into_iter().collect())
}

/// Field values from a small pool (plus random ones), so that operands
/// drawn from [`operand`] hit often, including through trigrams.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["abé", "ABÉ@x.org", "b@x.org", "x.org", "a", "É", "ab@x.org", "Ab\"a.b"])
            .prop_map(String::from),
        1 => text(7),
    ]
}

fn operand() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec!["x.or", "@x.", "bé", "é@x", "ab", "b@x.org", "ABÉ", "x.org", "b\"a", ""])
            .prop_map(String::from),
        2 => text(5),
        1 => prop::sample::select(vec!["true", "false", "human", "workload", "Service_Account"]).prop_map(String::from),
    ]
}

fn keys() -> impl Strategy<Value = Keys> {
    (
        value(),
        prop::option::of(value()),
        prop::option::of(value()),
        prop::collection::vec(value(), 0..3),
        0u8..4,
        0u8..4,
    )
        .prop_map(|(user_name, display_name, external_id, emails, status, kind)| Keys {
            user_name,
            display_name,
            external_id,
            emails,
            status,
            kind,
        })
}

fn search_filter() -> impl Strategy<Value = IdentityFilter> {
    let field = prop::sample::select(vec![
        IdentityField::Id,
        IdentityField::UserName,
        IdentityField::ExternalId,
        IdentityField::DisplayName,
        IdentityField::Email,
        IdentityField::Active,
        IdentityField::Kind,
    ]);
    let op = prop::sample::select(vec![
        TextOp::Eq,
        TextOp::StartsWith,
        TextOp::EndsWith,
        TextOp::Contains,
        TextOp::Gt,
        TextOp::Ge,
        TextOp::Lt,
        TextOp::Le,
    ]);
    let value = operand();
    let leaf = prop_oneof![
        Just(Filter::All),
        field.clone().prop_map(Filter::Present),
        (field, op, value).prop_map(|(field, op, value)| Filter::Text { field, op, value }),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn write_keys<D: DirectoryStore + ?Sized>(d: &D, n: u128, k: &Keys) {
    let current = d.identity(identity_id(n)).unwrap();
    let mut next = current.clone().unwrap_or_else(|| identity(n, ""));
    // Unique among live identities: the generated name plus the number.
    next.user_name = format!("{}{n}", k.user_name);
    next.display_name = k.display_name.clone();
    next.external_id = k.external_id.clone();
    next.emails = k.emails.clone();
    next.status =
        [IdentityStatus::Active, IdentityStatus::Suspended, IdentityStatus::Disabled, IdentityStatus::Active]
            [usize::from(k.status)];
    next.kind = IdentityKind::ALL[usize::from(k.kind)];
    let changes = lockstep_domain::diff_identity(current.as_ref(), &next);
    if changes.is_empty() {
        return;
    }
    d.commit_identity(IdentityWrite {
        expected_version: current.map(|c| c.version),
        identity: next,
        tiers: Tiers::STANDARD,
        fanout: Vec::new(),
        changes,
        origin: origin(),
        at: Timestamp(1_000),
    })
    .unwrap();
}

/// Random filters select the same identities, in the same order and with
/// the same total, on `open()` as on the model (whose [`Filter::holds`] is
/// the reference semantics), after creates and re-keying updates.
pub fn model_check_search<D: DirectoryStore>(open: impl Fn() -> D, cases: u32) {
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    let input = (
        prop::collection::vec(keys(), 1..8),
        prop::collection::vec((0u8..8, keys()), 0..4),
        prop::collection::vec(search_filter(), 1..8),
    );
    runner
        .run(&input, |(created, updates, filters)| {
            let model = MemoryDirectory::new();
            let real = open();
            for d in [&model as &dyn DirectoryStore, &real as &dyn DirectoryStore] {
                for (n, k) in created.iter().enumerate() {
                    write_keys(d, n as u128, k);
                }
                for (n, k) in &updates {
                    if usize::from(*n) < created.len() {
                        write_keys(d, u128::from(*n), k);
                    }
                }
            }
            for filter in &filters {
                for (offset, limit) in [(0, 100), (1, 2)] {
                    let q = IdentityQuery { filter: filter.clone(), offset, limit };
                    let ids = |d: &dyn DirectoryStore| {
                        let page = d.list_identities(&q).unwrap();
                        (page.total, page.items.into_iter().map(|i| i.id).collect::<Vec<_>>())
                    };
                    prop_assert_eq!(
                        ids(&model),
                        ids(&real),
                        "filter {:?} window {:?}",
                        filter,
                        (offset, limit)
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

#[derive(Clone, Debug)]
enum SesOp {
    Insert { n: u8, who: u8, expires: u8 },
    Revoke { n: u8, consumed: Option<u8> },
    Shorten { n: u8, expires: u8 },
    Suspend { n: u8, until: Option<u8> },
    Resume { n: u8 },
    Seen { n: u8, at: u8 },
    Query { who: u8, now: u8 },
}

fn ses_op() -> impl Strategy<Value = SesOp> {
    prop_oneof![
        (0u8..8, 0u8..3, 0u8..10).prop_map(|(n, who, expires)| SesOp::Insert { n, who, expires }),
        (0u8..8, prop::option::of(0u8..6)).prop_map(|(n, consumed)| SesOp::Revoke { n, consumed }),
        (0u8..8, 0u8..10).prop_map(|(n, expires)| SesOp::Shorten { n, expires }),
        (0u8..8, prop::option::of(0u8..10)).prop_map(|(n, until)| SesOp::Suspend { n, until }),
        (0u8..8).prop_map(|n| SesOp::Resume { n }),
        (0u8..8, 0u8..10).prop_map(|(n, at)| SesOp::Seen { n, at }),
        (0u8..3, 0u8..10).prop_map(|(who, now)| SesOp::Query { who, now }),
    ]
}

fn run_ses_op<S: SessionStore + ?Sized>(s: &S, op: &SesOp) -> String {
    let t = |x: u8| Timestamp(i64::from(x) * 100);
    match op {
        SesOp::Insert { n, who, expires } => {
            let x = session(u128::from(*n), identity_id(u128::from(*who)), t(*expires).0);
            format!(
                "{:?}",
                s.insert_session(
                    &x,
                    &[token(u128::from(*n), &x)],
                    audit(AuditKind::SessionCreated, Some(x.id))
                )
            )
        }
        SesOp::Revoke { n, consumed } => format!(
            "{:?} {:?}",
            s.apply(SessionBatch {
                consumed: consumed.map(|c| DirectoryEventId(u64::from(c))),
                updates: vec![SessionUpdate {
                    session: session_id(u128::from(*n)),
                    state: SessionState::Revoked {
                        at: Timestamp(7),
                        reason: RevocationReason::IdentityDeleted,
                        cause: consumed.map(|c| DirectoryEventId(u64::from(c))),
                    },
                    expires_at: None,
                }],
                audit: vec![audit(AuditKind::SessionRevoked, Some(session_id(u128::from(*n))))],
                ..SessionBatch::default()
            }),
            s.consumed()
        ),
        SesOp::Shorten { n, expires } => format!(
            "{:?}",
            s.apply(SessionBatch {
                consumed: None,
                updates: vec![SessionUpdate {
                    session: session_id(u128::from(*n)),
                    state: SessionState::NeedsRecheck,
                    expires_at: Some(t(*expires)),
                }],
                audit: vec![],
                ..SessionBatch::default()
            })
        ),
        SesOp::Suspend { n, until } => {
            let state = SessionState::Suspended {
                at: Timestamp(8),
                condition: lockstep_domain::SuspendCondition::OwnerLost,
                cause: None,
                until: until.map(t),
            };
            let update = SessionUpdate { session: session_id(u128::from(*n)), state, expires_at: None };
            format!("{:?}", s.apply(SessionBatch { updates: vec![update], ..SessionBatch::default() }))
        }
        SesOp::Resume { n } => {
            let state = SessionState::Active;
            let update = SessionUpdate { session: session_id(u128::from(*n)), state, expires_at: None };
            format!("{:?}", s.apply(SessionBatch { updates: vec![update], ..SessionBatch::default() }))
        }
        SesOp::Seen { n, at } => format!(
            "{:?}",
            s.apply(SessionBatch {
                last_seen: vec![(session_id(u128::from(*n)), t(*at))],
                ..SessionBatch::default()
            })
        ),
        SesOp::Query { who, now } => {
            let mut live = Vec::new();
            s.for_each_live(t(*now), &mut |x| live.push(x)).unwrap();
            let mut entries = Vec::new();
            s.for_each_live_entry(t(*now), &mut |x| entries.push(x)).unwrap();
            let mut projected: Vec<crate::LiveSession> = live.iter().map(crate::LiveSession::of).collect();
            // In any order (see the trait).
            entries.sort_by_key(|e| e.id);
            projected.sort_by_key(|e| e.id);
            assert_eq!(entries, projected, "for_each_live_entry is the projection of for_each_live");
            format!(
                "{:?} {:?} {:?} {:?}",
                s.sessions_of(identity_id(u128::from(*who))),
                live,
                s.suspensions_due(t(*now)),
                s.audit_after(0, 1_000).map(|a| a.len())
            )
        }
    }
}

/// Random operation sequences give the same results on `open()` as on the
/// in-memory model, and the audit chain always verifies.
pub fn model_check_sessions<S: SessionStore>(open: impl Fn() -> S, cases: u32) {
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    runner
        .run(&prop::collection::vec(ses_op(), 1..25), |ops| {
            let model = MemorySessions::new();
            let real = open();
            for op in &ops {
                prop_assert_eq!(run_ses_op(&model, op), run_ses_op(&real, op), "op {:?}", op);
            }
            let chain = real.audit_after(0, 10_000).unwrap();
            prop_assert!(verify_chain(chain).is_ok());
            Ok(())
        })
        .unwrap();
}
