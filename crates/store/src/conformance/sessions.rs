//! Session-store and credential checks.

use lockstep_domain::{
    ApiClient, AuditKind, ClientId, DirectoryEventId, RevocationReason, Scope, SessionState, Timestamp,
    Token, TokenHash, TokenKind,
};
use uuid::Uuid;

use super::{audit, identity_id, session, session_id, token};
use crate::{
    CredentialStore, SessionBatch, SessionStore, SessionUpdate, StoreError, TokenUpdate, verify_chain,
};

// ---- session checks ---------------------------------------------------------

pub fn sessions_round_trip<S: SessionStore>(s: &S) {
    let a = session(1, identity_id(0), 1_000);
    let b = session(2, identity_id(0), 50);
    let c = session(3, identity_id(1), 1_000);
    for (n, x) in [(1, &a), (2, &b), (3, &c)] {
        s.insert_session(x, &[token(n, x)], audit(AuditKind::SessionCreated, Some(x.id))).unwrap();
    }
    assert_eq!(s.session(a.id).unwrap(), Some(a.clone()));
    assert_eq!(s.session_by_token(&TokenHash([1; 32])).unwrap(), Some((a.clone(), token(1, &a))));
    assert_eq!(s.session_by_token(&TokenHash([99; 32])).unwrap(), None);
    assert_eq!(s.tokens_of(a.id).unwrap(), vec![token(1, &a)]);
    assert_eq!(s.sessions_of(identity_id(0)).unwrap(), vec![a.clone(), b.clone()]);
    let many = s.live_sessions_of(&[identity_id(1), identity_id(0), identity_id(7)], Timestamp(100)).unwrap();
    let mut ids: Vec<_> = many.iter().map(|x| x.id).collect();
    ids.sort();
    assert_eq!(ids, vec![a.id, c.id], "live ones of the identities asked for");
    let mut live = Vec::new();
    s.for_each_live(Timestamp(100), &mut |x| live.push(x.id)).unwrap();
    assert_eq!(live, vec![a.id, c.id]);
    let dup = s.insert_session(&a, &[], audit(AuditKind::SessionCreated, Some(a.id))).unwrap_err();
    assert!(matches!(dup, StoreError::Conflict { .. }));
    // A secret is unique: another session cannot carry it.
    let d = session(4, identity_id(1), 1_000);
    let dup =
        s.insert_session(&d, &[token(1, &d)], audit(AuditKind::SessionCreated, Some(d.id))).unwrap_err();
    assert!(matches!(dup, StoreError::Conflict { .. }));
    assert_eq!(s.session(d.id).unwrap(), None, "nothing of the batch was written");
}

pub fn batches_are_atomic_with_the_cursor<S: SessionStore>(s: &S) {
    let a = session(1, identity_id(0), 1_000);
    s.insert_session(&a, &[token(1, &a)], audit(AuditKind::SessionCreated, Some(a.id))).unwrap();
    assert_eq!(s.consumed().unwrap(), None);
    let revoked = SessionState::Revoked {
        at: Timestamp(20),
        reason: RevocationReason::IdentityDeactivated,
        cause: Some(DirectoryEventId(3)),
    };
    let batch = SessionBatch {
        consumed: Some(DirectoryEventId(3)),
        updates: vec![SessionUpdate { session: a.id, state: revoked, expires_at: None }],
        audit: vec![
            audit(AuditKind::IdentityDeactivated, None),
            audit(AuditKind::SessionRevoked, Some(a.id)),
        ],
        ..SessionBatch::default()
    };
    let sealed = s.apply(batch.clone()).unwrap();
    assert_eq!(sealed.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(s.consumed().unwrap(), Some(DirectoryEventId(3)));
    assert_eq!(s.session(a.id).unwrap().unwrap().state, revoked);
    // Replaying the same batch (a crash before the caller saw the commit) is a no-op.
    assert!(s.apply(batch).unwrap().is_empty());
    assert_eq!(s.audit_after(0, 100).unwrap().len(), 3);
    // A batch naming a missing session writes nothing, cursor included.
    let bad = SessionBatch {
        consumed: Some(DirectoryEventId(4)),
        updates: vec![SessionUpdate { session: session_id(99), state: revoked, expires_at: None }],
        audit: vec![audit(AuditKind::SessionRevoked, None)],
        ..SessionBatch::default()
    };
    assert!(matches!(s.apply(bad), Err(StoreError::NotFound(_))));
    assert_eq!(s.consumed().unwrap(), Some(DirectoryEventId(3)));
    assert_eq!(s.audit_after(0, 100).unwrap().len(), 3);
}

pub fn revoked_is_terminal<S: SessionStore>(s: &S) {
    let a = session(1, identity_id(0), 1_000);
    s.insert_session(&a, &[token(1, &a)], audit(AuditKind::SessionCreated, Some(a.id))).unwrap();
    let revoked =
        SessionState::Revoked { at: Timestamp(5), reason: RevocationReason::AdminRevoked, cause: None };
    s.apply(SessionBatch {
        consumed: None,
        updates: vec![SessionUpdate { session: a.id, state: revoked, expires_at: None }],
        audit: vec![],
        ..SessionBatch::default()
    })
    .unwrap();
    s.apply(SessionBatch {
        consumed: None,
        updates: vec![SessionUpdate {
            session: a.id,
            state: SessionState::Active,
            expires_at: Some(Timestamp(9_999)),
        }],
        audit: vec![],
        ..SessionBatch::default()
    })
    .unwrap();
    let stored = s.session(a.id).unwrap().unwrap();
    assert_eq!(stored.state, revoked);
    assert_eq!(stored.expires_at, Timestamp(1_000));
}

pub fn audit_chain_verifies_and_pages<S: SessionStore + CredentialStore>(s: &S) {
    for n in 0..7 {
        let x = session(n, identity_id(0), 1_000);
        s.insert_session(&x, &[token(n, &x)], audit(AuditKind::SessionCreated, Some(x.id))).unwrap();
    }
    s.insert_client(
        &ApiClient {
            id: ClientId::from_uuid(Uuid::from_u128(3)),
            name: "okta".into(),
            secret_hash: TokenHash([3; 32]),
            scopes: vec![Scope::Scim, Scope::Audit],
            created: Timestamp(1),
        },
        audit(AuditKind::ClientCreated, None),
    )
    .unwrap();
    let all = s.audit_after(0, 100).unwrap();
    assert_eq!(all.len(), 8);
    assert_eq!(verify_chain(all.clone()), Ok(8));
    assert_eq!(s.audit_after(3, 2).unwrap(), all[3..5].to_vec());
    let mut tampered = all;
    tampered[4].entry.detail = "edited".into();
    assert_eq!(verify_chain(tampered).unwrap_err().seq, 5);
}

pub fn credentials_round_trip<S: CredentialStore>(s: &S) {
    assert_eq!(s.admin_token_hash().unwrap(), None);
    s.set_admin_token_hash(TokenHash([1; 32])).unwrap();
    s.set_admin_token_hash(TokenHash([2; 32])).unwrap();
    assert_eq!(s.admin_token_hash().unwrap(), Some(TokenHash([2; 32])));
    let client = ApiClient {
        id: ClientId::from_uuid(Uuid::from_u128(3)),
        name: "okta".into(),
        secret_hash: TokenHash([3; 32]),
        scopes: vec![Scope::Scim, Scope::Introspect],
        created: Timestamp(1),
    };
    s.insert_client(&client, audit(AuditKind::ClientCreated, None)).unwrap();
    assert_eq!(s.clients().unwrap(), vec![client.clone()]);
    assert!(s.insert_client(&client, audit(AuditKind::ClientCreated, None)).is_err());
    assert_eq!(s.clients().unwrap().len(), 1);
    // Names are identifiers: unique under the identifier key, so a
    // look-alike (`ＯＫＴＡ`) cannot sit beside `okta` in a client list.
    let look_alike = ApiClient {
        id: ClientId::from_uuid(Uuid::from_u128(4)),
        name: "ＯＫＴＡ".into(),
        secret_hash: TokenHash([4; 32]),
        ..client.clone()
    };
    assert!(matches!(
        s.insert_client(&look_alike, audit(AuditKind::ClientCreated, None)),
        Err(StoreError::Conflict { field: "name", .. })
    ));
    assert_eq!(s.clients().unwrap().len(), 1);
}

/// New sessions commit in a batch with the rest, or not at all; a
/// suspension round-trips and falls due at its deadline; last use only
/// moves forward and never touches a revoked session; the policy hash and
/// the audit of an event are read back.
pub fn batched_inserts_suspensions_and_last_seen<S: SessionStore>(s: &S) {
    use lockstep_domain::SuspendCondition;
    let a = session(1, identity_id(0), 1_000);
    let b = session(2, identity_id(0), 1_000);
    let mut cited = audit(AuditKind::SessionCreated, Some(a.id));
    cited.directory_event = Some(DirectoryEventId(4));
    s.apply(SessionBatch {
        inserts: vec![a.clone(), b.clone()],
        tokens: vec![token(1, &a), token(2, &b)],
        audit: vec![cited, audit(AuditKind::SessionCreated, Some(b.id))],
        policy: Some("p1".into()),
        ..SessionBatch::default()
    })
    .unwrap();
    assert_eq!(s.sessions_of(identity_id(0)).unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(s.policy().unwrap().as_deref(), Some("p1"));
    // A batch with a clashing insert writes nothing at all.
    let c = session(3, identity_id(1), 1_000);
    let clash = session(4, identity_id(1), 1_000);
    let err = s
        .apply(SessionBatch {
            inserts: vec![c.clone(), clash.clone()],
            tokens: vec![token(3, &c), Token { session: clash.id, ..token(1, &a) }],
            audit: vec![audit(AuditKind::SessionCreated, Some(c.id))],
            policy: Some("p2".into()),
            ..SessionBatch::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(s.session(c.id).unwrap(), None);
    assert_eq!(s.policy().unwrap().as_deref(), Some("p1"));
    assert_eq!(s.audit_after(0, 100).unwrap().len(), 2);
    // Suspension and its deadline.
    let suspended = SessionState::Suspended {
        at: Timestamp(20),
        condition: SuspendCondition::OwnerLost,
        cause: Some(DirectoryEventId(4)),
        until: Some(Timestamp(500)),
    };
    let mut why = audit(AuditKind::SessionSuspended, Some(a.id));
    why.directory_event = Some(DirectoryEventId(4));
    s.apply(SessionBatch {
        updates: vec![SessionUpdate { session: a.id, state: suspended, expires_at: None }],
        audit: vec![why],
        ..SessionBatch::default()
    })
    .unwrap();
    assert_eq!(s.session(a.id).unwrap().unwrap().state, suspended);
    assert!(s.suspensions_due(Timestamp(499)).unwrap().is_empty());
    assert_eq!(
        s.suspensions_due(Timestamp(500)).unwrap().iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![a.id]
    );
    assert!(s.suspensions_due(Timestamp(1_000)).unwrap().is_empty(), "expired sessions are not due");
    let mut live = Vec::new();
    s.for_each_live(Timestamp(100), &mut |x| live.push(x.id)).unwrap();
    assert_eq!(live, vec![a.id, b.id], "a suspended session is still live (it can resume)");
    // Last use moves forward only, and not for revoked sessions.
    let revoked =
        SessionState::Revoked { at: Timestamp(30), reason: RevocationReason::AdminRevoked, cause: None };
    s.apply(SessionBatch {
        updates: vec![SessionUpdate { session: b.id, state: revoked, expires_at: None }],
        last_seen: vec![(a.id, Timestamp(60)), (b.id, Timestamp(70))],
        ..SessionBatch::default()
    })
    .unwrap();
    s.apply(SessionBatch { last_seen: vec![(a.id, Timestamp(50))], ..SessionBatch::default() }).unwrap();
    assert_eq!(s.session(a.id).unwrap().unwrap().last_seen, Timestamp(60));
    assert_eq!(s.session(b.id).unwrap().unwrap().last_seen, b.last_seen);
    // Resume.
    s.apply(SessionBatch {
        updates: vec![SessionUpdate { session: a.id, state: SessionState::Active, expires_at: None }],
        ..SessionBatch::default()
    })
    .unwrap();
    assert!(s.suspensions_due(Timestamp(500)).unwrap().is_empty());
    let of_event = s.audit_of_events(&[DirectoryEventId(4)]).unwrap();
    assert_eq!(
        of_event.iter().map(|r| r.entry.kind).collect::<Vec<_>>(),
        vec![AuditKind::SessionCreated, AuditKind::SessionSuspended]
    );
    assert!(s.audit_of_events(&[DirectoryEventId(5)]).unwrap().is_empty());
}

/// Tokens belong to sessions: the first retirement stands, an expiry only
/// moves earlier, the live bearer secrets are those of live sessions, and a
/// purge removes sessions past retention with their tokens.
pub fn tokens_retire_and_purge<S: SessionStore>(s: &S) {
    let a = session(1, identity_id(0), 1_000);
    let b = session(2, identity_id(0), 1_000);
    let refresh = Token { hash: TokenHash([11; 32]), kind: TokenKind::Refresh, ..token(1, &a) };
    let key = Token { hash: TokenHash([12; 32]), kind: TokenKind::ApiKey, session: b.id, ..token(2, &b) };
    s.apply(SessionBatch {
        inserts: vec![a.clone(), b.clone()],
        tokens: vec![token(1, &a), refresh, key],
        ..SessionBatch::default()
    })
    .unwrap();
    // A token of an unknown session is refused, with the rest of its batch.
    let stray = Token { hash: TokenHash([13; 32]), session: session_id(9), ..token(1, &a) };
    let err = s.apply(SessionBatch { tokens: vec![stray], ..SessionBatch::default() }).unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let retire = |hash: TokenHash, at: i64, expires: Option<i64>| TokenUpdate {
        hash,
        retired_at: Some(Timestamp(at)),
        expires_at: expires.map(Timestamp),
    };
    s.apply(SessionBatch { token_updates: vec![retire(refresh.hash, 20, None)], ..SessionBatch::default() })
        .unwrap();
    s.apply(SessionBatch {
        token_updates: vec![retire(refresh.hash, 30, Some(5_000))],
        ..SessionBatch::default()
    })
    .unwrap();
    let stored = s.token(&refresh.hash).unwrap().unwrap();
    assert_eq!(stored.retired_at, Some(Timestamp(20)), "the first retirement stands");
    assert_eq!(stored.expires_at, Timestamp(1_000), "an expiry never moves later");
    assert!(!stored.works(Timestamp(50)), "a retired refresh token no longer works");
    s.apply(SessionBatch { token_updates: vec![retire(key.hash, 40, Some(500))], ..SessionBatch::default() })
        .unwrap();
    let key_now = s.token(&key.hash).unwrap().unwrap();
    assert_eq!(key_now.expires_at, Timestamp(500));
    assert!(key_now.works(Timestamp(499)), "a rotated secret works for its grace");
    let unknown = TokenUpdate { hash: TokenHash([99; 32]), retired_at: None, expires_at: None };
    assert!(matches!(
        s.apply(SessionBatch { token_updates: vec![unknown], ..SessionBatch::default() }),
        Err(StoreError::NotFound(_))
    ));
    let live = |now: i64| {
        let mut hashes = Vec::new();
        s.for_each_live_token(Timestamp(now), &mut |t| hashes.push(t.hash)).unwrap();
        hashes.sort();
        hashes
    };
    assert_eq!(live(100), vec![TokenHash([1; 32]), key.hash], "bearer secrets only, not refresh tokens");
    assert_eq!(live(600), vec![TokenHash([1; 32])], "the rotated key's grace ended");
    // Revoke a; purge what was revoked or expired before 800.
    let revoked =
        SessionState::Revoked { at: Timestamp(700), reason: RevocationReason::AdminRevoked, cause: None };
    s.apply(SessionBatch {
        updates: vec![SessionUpdate { session: a.id, state: revoked, expires_at: None }],
        ..SessionBatch::default()
    })
    .unwrap();
    // Only tokens of the revoked session may still be listed; the caller
    // drops them.
    let of_a: Vec<TokenHash> = s.tokens_of(a.id).unwrap().iter().map(|t| t.hash).collect();
    assert!(live(710).iter().all(|h| of_a.contains(h)), "only tokens of the revoked session");
    assert_eq!(s.purge(Timestamp(600), 10).unwrap(), 0, "nothing is past retention yet");
    assert_eq!(s.purge(Timestamp(800), 10).unwrap(), 1);
    assert_eq!(s.session(a.id).unwrap(), None);
    assert_eq!(s.token(&refresh.hash).unwrap(), None, "its tokens went with it");
    assert!(s.session(b.id).unwrap().is_some());
    assert_eq!(s.purge(Timestamp(2_000), 10).unwrap(), 1, "expired sessions go too");
    assert!(s.tokens_of(b.id).unwrap().is_empty());
}

// ---- signal checks ----------------------------------------------------------

/// The outbox commits with its batch (and not at all when the batch
/// fails), once per signal however many streams it goes to; each stream
/// sees its pending signals oldest first, with a `jti` of its own that a
/// failed attempt keeps, until delivered or dropped; a stream created
/// later never sees older signals.
pub fn signals_outbox_commits_with_the_batch<S: SessionStore + crate::SignalStore>(s: &S) {
    use lockstep_domain::{
        Delivery, IdentityId, Outgoing, Signal, SignalKind, Stream, StreamId, StreamStatus, Tiers,
    };
    let new_stream = |n: u128| Stream {
        id: StreamId::from_uuid(Uuid::from_u128(n)),
        client: None,
        audience: "https://rp.example.com".into(),
        delivery: Delivery::Push {
            endpoint: "https://rp.example.com/ssf".into(),
            authorization: Some("Bearer x".into()),
        },
        requested: vec![SignalKind::SessionRevoked, SignalKind::AccountDisabled],
        status: StreamStatus::Enabled,
        reason: None,
        description: Some("rp".into()),
        subjects: vec![identity_id(1)],
        excluded: vec![identity_id(2)],
        created: Timestamp(1),
    };
    let stream = new_stream(5);
    let other = new_stream(6);
    s.put_stream(&stream).unwrap();
    s.put_stream(&other).unwrap();
    assert_eq!(s.streams().unwrap(), vec![stream.clone(), other.clone()]);
    let signal = |n: u128, kind| Outgoing {
        jti_base: format!("jti-{n}"),
        streams: vec![stream.id, other.id],
        signal: Signal {
            kind,
            at: Timestamp(10),
            identity: Some(IdentityId::from_uuid(Uuid::from_u128(n))),
            user_name: Some(format!("user{n}@example.com")),
            session: Some(session_id(n)),
            change: None,
            credential_type: None,
            claims: Some((vec!["admins".into(), "eng".into()], Tiers { privileged: true, non_human: false })),
            initiator: "policy".into(),
            reason: "deactivated".into(),
            txn: "dir-7".into(),
            state: None,
        },
    };
    let a = session(1, identity_id(0), 1_000);
    let batch = SessionBatch {
        inserts: vec![a.clone()],
        outbox: vec![signal(1, SignalKind::SessionRevoked), signal(2, SignalKind::AccountDisabled)],
        audit: vec![audit(AuditKind::SessionCreated, Some(a.id))],
        ..SessionBatch::default()
    };
    s.apply(batch).unwrap();
    // A failing batch queues nothing.
    let failing = SessionBatch {
        inserts: vec![a.clone()],
        outbox: vec![signal(3, SignalKind::SessionRevoked)],
        ..SessionBatch::default()
    };
    assert!(s.apply(failing).is_err());
    // A stream created now gets none of the signals queued before it.
    let late = new_stream(7);
    s.put_stream(&late).unwrap();
    assert!(s.pending(late.id, Timestamp(100), 10).unwrap().is_empty());
    assert_eq!(s.pending_count(late.id).unwrap(), 0);

    let pending = s.pending(stream.id, Timestamp(100), 10).unwrap();
    assert_eq!(pending.iter().map(|q| q.outgoing.jti.as_str()).collect::<Vec<_>>(), ["jti-1.0", "jti-2.0"]);
    assert_eq!(pending[0].outgoing.signal, signal(1, SignalKind::SessionRevoked).signal, "round trip");
    assert_eq!(pending[0].outgoing.stream, stream.id);
    let theirs = s.pending(other.id, Timestamp(100), 10).unwrap();
    assert_eq!(theirs.iter().map(|q| q.outgoing.jti.as_str()).collect::<Vec<_>>(), ["jti-1.1", "jti-2.1"]);
    assert_eq!(s.pending_count(stream.id).unwrap(), 2);
    s.retry_later(stream.id, "jti-1.0", Timestamp(500), "503").unwrap();
    let due = s.pending(stream.id, Timestamp(100), 10).unwrap();
    assert!(due.is_empty(), "the oldest waits for its retry and holds the later one back: {due:?}");
    assert_eq!(
        s.pending(other.id, Timestamp(100), 10).unwrap().len(),
        2,
        "another stream's retry is not ours"
    );
    let later = s.pending(stream.id, Timestamp(600), 10).unwrap();
    assert_eq!(
        (later[0].outgoing.jti.as_str(), later[0].attempts),
        ("jti-1.0", 1),
        "same jti, one failed attempt"
    );
    // Out of order (a poll acknowledging the second first); another
    // stream's jti, an unknown one and a malformed one settle nothing.
    let acks = ["jti-2.0", "jti-1.1", "nope", "jti-9.0", "jti-2.x", "."].map(String::from);
    assert_eq!(s.delivered(stream.id, &acks, Timestamp(700)).unwrap(), 1);
    assert_eq!(s.delivered(stream.id, &["jti-2.0".into()], Timestamp(800)).unwrap(), 0, "once");
    assert_eq!(s.pending_count(stream.id).unwrap(), 1);
    assert_eq!(s.pending_count(other.id).unwrap(), 2);
    let left = s.pending(stream.id, Timestamp(600), 10).unwrap();
    assert_eq!(left.iter().map(|q| q.outgoing.jti.as_str()).collect::<Vec<_>>(), ["jti-1.0"]);
    let reach = s.signals_of("dir-7").unwrap();
    let row = |jti: &str| reach.iter().find(|r| r.jti == jti).unwrap().clone();
    assert_eq!(reach.len(), 4, "{reach:?}");
    assert_eq!((row("jti-2.0").delivered_at, row("jti-2.0").stream), (Some(Timestamp(700)), stream.id));
    assert_eq!((row("jti-1.0").attempts, row("jti-1.0").error.as_deref()), (1, Some("503")));
    assert_eq!(row("jti-1.1").delivered_at, None);
    // In order, the rest of the first stream.
    assert_eq!(s.delivered(stream.id, &["jti-1.0".into()], Timestamp(900)).unwrap(), 1);
    assert_eq!(s.pending_count(stream.id).unwrap(), 0);
    assert!(s.pending(stream.id, Timestamp(1_000), 10).unwrap().is_empty());
    let reach = s.signals_of("dir-7").unwrap();
    assert_eq!(reach.iter().find(|r| r.jti == "jti-1.0").unwrap().error, None, "delivered clears the error");
    // Dropping settles without delivering: gone from the reach report.
    assert_eq!(s.drop_pending(other.id).unwrap(), 2);
    assert_eq!(s.pending_count(other.id).unwrap(), 0);
    assert_eq!(s.signals_of("dir-7").unwrap().len(), 2);
    // Signals queued after the drop reach the stream again.
    let batch =
        SessionBatch { outbox: vec![signal(4, SignalKind::SessionRevoked)], ..SessionBatch::default() };
    s.apply(batch).unwrap();
    assert_eq!(s.pending_count(other.id).unwrap(), 1);
    assert_eq!(s.pending(other.id, Timestamp(1_000), 10).unwrap()[0].outgoing.jti, "jti-4.1");
    assert_eq!(s.delivered(stream.id, &["jti-4.0".into()], Timestamp(1_000)).unwrap(), 1);
    // A long run of signals for one stream neither hides a later signal
    // from another stream nor shows it theirs.
    let to = |streams: Vec<StreamId>, n: u128| {
        let o = signal(n, SignalKind::SessionRevoked);
        Outgoing { streams, signal: Signal { txn: "dir-8".into(), ..o.signal }, ..o }
    };
    s.queue((100..800).map(|n| to(vec![late.id], n)).collect()).unwrap();
    assert!(s.pending(stream.id, Timestamp(1_000), 10).unwrap().is_empty());
    assert_eq!(s.pending_count(late.id).unwrap(), 700);
    s.queue(vec![to(vec![stream.id, late.id], 900)]).unwrap();
    let next = s.pending(stream.id, Timestamp(1_000), 10).unwrap();
    assert_eq!(next.iter().map(|q| q.outgoing.jti.as_str()).collect::<Vec<_>>(), ["jti-900.0"]);
    assert_eq!(s.pending(late.id, Timestamp(1_000), 1_000).unwrap().len(), 701);
    assert_eq!(s.delivered(late.id, &["jti-900.1".into()], Timestamp(1_100)).unwrap(), 1);
    assert_eq!(s.pending_count(late.id).unwrap(), 700, "acknowledged out of order, the rest stay");
    // Deleting a stream keeps what it was delivered in the reach report.
    assert!(s.delete_stream(stream.id).unwrap());
    assert!(s.delete_stream(other.id).unwrap());
    assert!(s.delete_stream(late.id).unwrap());
    assert!(s.streams().unwrap().is_empty());
    let reach = s.signals_of("dir-7").unwrap();
    assert_eq!(reach.iter().map(|r| r.jti.as_str()).collect::<Vec<_>>(), ["jti-1.0", "jti-2.0", "jti-4.0"]);
    assert!(s.signals_of("dir-9").unwrap().is_empty());
}
