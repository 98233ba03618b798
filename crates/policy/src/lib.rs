//! The only bridge between entitlement truth and session validity.
//!
//! [`evaluate`] is a pure function, shaped like cedar's `is_authorized`: it
//! takes a directory event, the policy, the sessions the event may touch and
//! the current time, and returns a [`Decision`] — the session actions to
//! apply and the reasons for them. It performs no I/O and reads no clock, so
//! the same inputs always give the same decision, on every node, in replay
//! and in tests.

use std::fmt;
use std::time::Duration;

use lockstep_domain::{
    ChangeKind, DirectoryEvent, DirectoryEventId, RevocationReason, Session, SessionId, Timestamp,
};

/// What a rule does to every live session of the identity an event concerns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Impact {
    /// Revoke every live session. Terminal.
    RevokeAll,
    /// Require a fresh decision against the directory on next use.
    MarkForRecheck,
    /// Bring every live session's expiry forward to at most `now + ttl`.
    ShortenTtl(Duration),
    /// Leave sessions alone.
    Nothing,
}

/// One declarative rule: on this kind of directory change, apply this impact.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Rule {
    /// Stable name, cited in decision reasons and audit records.
    pub name: String,
    /// The directory change it matches.
    pub on: ChangeKind,
    /// What it does.
    pub impact: Impact,
}

/// A policy was rejected.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PolicyError {
    /// A rule would let a deactivated or deleted identity keep live
    /// sessions; Lockstep's core promise forbids that.
    WeakensLifecycleRevocation {
        /// The offending rule.
        rule: String,
    },
    /// Two rules match the same change kind, so the outcome would depend on
    /// rule order.
    DuplicateRule {
        /// The change kind matched twice.
        on: ChangeKind,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::WeakensLifecycleRevocation { rule } => write!(
                f,
                "rule {rule:?} does not revoke on deactivation or deletion; lifecycle changes must revoke all sessions"
            ),
            PolicyError::DuplicateRule { on } => write!(f, "more than one rule matches {on}"),
        }
    }
}

impl std::error::Error for PolicyError {}

/// A validated set of rules.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// Validates rules into a policy.
    ///
    /// Change kinds without a rule get [`Impact::Nothing`], except
    /// deactivation and deletion, which always revoke: a policy may not
    /// weaken that, only say so explicitly.
    pub fn new(rules: Vec<Rule>) -> Result<Self, PolicyError> {
        for (i, rule) in rules.iter().enumerate() {
            if rules[..i].iter().any(|r| r.on == rule.on) {
                return Err(PolicyError::DuplicateRule { on: rule.on });
            }
            if is_lifecycle_loss(rule.on) && rule.impact != Impact::RevokeAll {
                return Err(PolicyError::WeakensLifecycleRevocation { rule: rule.name.clone() });
            }
        }
        Ok(Self { rules })
    }

    /// The default policy: deactivation and deletion revoke every session;
    /// re-activation restores entitlement but never a revoked session.
    pub fn default_rules() -> Self {
        Self {
            rules: vec![
                Rule {
                    name: "revoke-on-deactivation".into(),
                    on: ChangeKind::IdentityDeactivated,
                    impact: Impact::RevokeAll,
                },
                Rule {
                    name: "revoke-on-deletion".into(),
                    on: ChangeKind::IdentityDeleted,
                    impact: Impact::RevokeAll,
                },
            ],
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn rule_for(&self, kind: ChangeKind) -> Option<&Rule> {
        self.rules.iter().find(|r| r.on == kind)
    }

    /// The impact this policy gives a change kind, and the rule that says so.
    fn impact_of(&self, kind: ChangeKind) -> (&str, Impact) {
        match self.rule_for(kind) {
            Some(rule) => (rule.name.as_str(), rule.impact),
            // Validation guarantees lifecycle loss has a rule; this keeps the
            // function total (and fail-closed) for policies built by hand.
            None if is_lifecycle_loss(kind) => ("lifecycle-floor", Impact::RevokeAll),
            None => ("default", Impact::Nothing),
        }
    }

    /// Whether an event of this kind can act on any session. When it cannot,
    /// [`evaluate`] returns no actions whatever the sessions, so a caller
    /// need not load them (most directory writes — creates, profile edits —
    /// are such events).
    pub fn acts_on(&self, kind: ChangeKind) -> bool {
        self.impact_of(kind).1 != Impact::Nothing
    }
}

fn is_lifecycle_loss(kind: ChangeKind) -> bool {
    matches!(kind, ChangeKind::IdentityDeactivated | ChangeKind::IdentityDeleted)
}

/// What to do to one session. Imperative: these are instructions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SessionAction {
    /// Revoke the session.
    Revoke {
        /// Which session.
        session: SessionId,
        /// Why.
        reason: RevocationReason,
    },
    /// Require a re-check against the directory before next use.
    MarkForRecheck {
        /// Which session.
        session: SessionId,
    },
    /// Bring the session's absolute expiry forward.
    ShortenExpiry {
        /// Which session.
        session: SessionId,
        /// New expiry, never later than the current one.
        expires_at: Timestamp,
    },
}

impl SessionAction {
    /// The session the action applies to.
    pub fn session(&self) -> SessionId {
        match self {
            SessionAction::Revoke { session, .. }
            | SessionAction::MarkForRecheck { session }
            | SessionAction::ShortenExpiry { session, .. } => *session,
        }
    }
}

/// Why a decision came out the way it did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Reason {
    /// The rule that matched, or `default` when none did.
    pub rule: String,
    /// The event decided on.
    pub event: DirectoryEventId,
    /// One sentence for the audit trail.
    pub text: String,
}

/// The outcome of [`evaluate`].
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Decision {
    /// Session actions, at most one per session.
    pub actions: Vec<SessionAction>,
    /// Why.
    pub reasons: Vec<Reason>,
}

/// Decides the session impact of one directory event.
///
/// `sessions` may contain any sessions; only live sessions (not revoked, not
/// expired at `now`) of the identity the event concerns are acted on, each
/// at most once. Events about a group itself act on nothing: membership
/// changes arrive as events of each member. No action ever makes a revoked session valid again.
pub fn evaluate(event: &DirectoryEvent, policy: &Policy, sessions: &[Session], now: Timestamp) -> Decision {
    let kind = event.change.kind();
    let (rule_name, impact) = policy.impact_of(kind);
    let mut decision = Decision::default();
    let mut seen: Vec<SessionId> = Vec::new();
    let subject = event.subject.identity();
    let affected = sessions.iter().filter(|s| Some(s.identity) == subject && s.is_live(now));
    for session in affected {
        if seen.contains(&session.id) {
            continue;
        }
        seen.push(session.id);
        let action = match impact {
            Impact::Nothing => None,
            Impact::RevokeAll => {
                Some(SessionAction::Revoke { session: session.id, reason: revocation_reason(kind) })
            }
            Impact::MarkForRecheck => Some(SessionAction::MarkForRecheck { session: session.id }),
            Impact::ShortenTtl(ttl) => {
                let bound = now.plus(ttl);
                (bound < session.expires_at)
                    .then_some(SessionAction::ShortenExpiry { session: session.id, expires_at: bound })
            }
        };
        if let Some(action) = action {
            decision.actions.push(action);
        }
    }
    let text = match (impact, decision.actions.len()) {
        (Impact::Nothing, _) => format!("{kind}: no session impact"),
        (_, 0) => format!("{kind}: no live session to act on"),
        (Impact::RevokeAll, n) => format!("{kind}: revoke all {n} live session(s)"),
        (Impact::MarkForRecheck, n) => format!("{kind}: mark {n} live session(s) for re-check"),
        (Impact::ShortenTtl(ttl), n) => {
            format!("{kind}: shorten {n} live session(s) to at most {}s", ttl.as_secs())
        }
    };
    decision.reasons.push(Reason { rule: rule_name.to_owned(), event: event.id, text });
    decision
}

fn revocation_reason(kind: ChangeKind) -> RevocationReason {
    match kind {
        ChangeKind::IdentityDeleted => RevocationReason::IdentityDeleted,
        _ => RevocationReason::IdentityDeactivated,
    }
}
