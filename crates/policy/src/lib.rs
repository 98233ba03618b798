//! The only bridge between entitlement truth and session validity.
//!
//! [`evaluate`] is a pure function, shaped like cedar's `is_authorized`: it
//! takes a directory event (which carries everything the decision reads —
//! the subject's kind and tiers as of the event, so a replay decides the
//! same), the policy, the sessions the event may touch and the current
//! time, and returns a [`Decision`]: the session actions and the reason for
//! them, citing the rule. It performs no I/O and reads no clock.
//!
//! A [`Policy`] gives each tier (`standard`, `privileged`, `non_human`) an
//! impact per kind of change ([`Trigger`]) and lifetime limits; an identity
//! in two tiers gets the stricter setting, setting by setting. Three things
//! no policy can do, and property tests pin them: make a revoked session
//! valid again, extend an expiry, or keep a session of a deactivated or
//! deleted identity alive.

mod impact;
mod tiers;

use std::time::Duration;

use lockstep_domain::{
    ChangeKind, CredentialKind, DirectoryChange, DirectoryEvent, DirectoryEventId, RevocationReason, Session,
    SessionId, SessionState, SuspendCondition, Tiers, Timestamp,
};

pub use impact::{BadImpact, Impact, Trigger};
pub use tiers::{Effective, Policy, PolicyConfig, PolicyError, Tier, TierConfig, TierSettings};

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
    /// Record that the session's claims changed under it.
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
    /// Make the session inactive until `condition` clears.
    Suspend {
        /// Which session.
        session: SessionId,
        /// What must clear.
        condition: SuspendCondition,
        /// When it is revoked if the condition has not cleared.
        until: Option<Timestamp>,
    },
    /// A suspension's condition cleared: active again.
    Resume {
        /// Which session.
        session: SessionId,
    },
    /// End the session's refresh tokens: it cannot be renewed, and its
    /// access tokens live out their (short) lifetimes.
    RevokeRefresh {
        /// Which session.
        session: SessionId,
    },
}

impl SessionAction {
    /// The session the action applies to.
    pub fn session(&self) -> SessionId {
        match self {
            SessionAction::Revoke { session, .. }
            | SessionAction::MarkForRecheck { session }
            | SessionAction::ShortenExpiry { session, .. }
            | SessionAction::Suspend { session, .. }
            | SessionAction::Resume { session }
            | SessionAction::RevokeRefresh { session } => *session,
        }
    }
}

/// Why a decision came out the way it did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Reason {
    /// The rule that decided, e.g. `privileged.on_attributes_changed`,
    /// `lifecycle.on_deactivated`, or `none` for changes no rule concerns.
    pub rule: String,
    /// The event decided on.
    pub event: DirectoryEventId,
    /// One sentence for the audit trail and the reach report.
    pub text: String,
}

/// The outcome of [`evaluate`].
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Decision {
    /// Session actions, at most one per session.
    pub actions: Vec<SessionAction>,
    /// Why (one reason per decision).
    pub reasons: Vec<Reason>,
}

impl Decision {
    /// The rule cited.
    pub fn rule(&self) -> &str {
        self.reasons.first().map_or("none", |r| r.rule.as_str())
    }
}

/// What an event asks of the policy: a configurable trigger for some tiers,
/// or one of the fixed rules.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ask {
    /// Deactivation or deletion: always revoke.
    Lifecycle(RevocationReason, &'static str),
    /// A configurable trigger, under the settings of these tiers.
    Configured(Trigger, Tiers),
    /// The owner-lost condition cleared: resume what it suspended.
    OwnerRestored,
    /// Nothing to decide.
    Nothing,
}

fn ask(event: &DirectoryEvent, policy: &Policy) -> Ask {
    let tiers = event.subject.tiers();
    match &event.change {
        DirectoryChange::IdentityDeactivated { .. } => {
            Ask::Lifecycle(RevocationReason::IdentityDeactivated, "lifecycle.on_deactivated")
        }
        DirectoryChange::IdentityDeleted => {
            Ask::Lifecycle(RevocationReason::IdentityDeleted, "lifecycle.on_deleted")
        }
        // The identity was in the tier the group conferred until this event.
        DirectoryChange::RemovedFromGroup { group, group_name } if policy.confers(*group, group_name) => {
            Ask::Configured(Trigger::TierGroupRemoved, Tiers { privileged: true, ..tiers })
        }
        DirectoryChange::RemovedFromGroup { .. } | DirectoryChange::AddedToGroup { .. } => {
            Ask::Configured(Trigger::GroupChanged, tiers)
        }
        DirectoryChange::IdentityUpdated { changed } if !changed.is_empty() => {
            Ask::Configured(Trigger::AttributesChanged, tiers)
        }
        DirectoryChange::TierChanged { from, to } if to.gained_from(*from) => {
            Ask::Configured(Trigger::TierGained, *to)
        }
        DirectoryChange::TierChanged { from, .. } => Ask::Configured(Trigger::TierLost, *from),
        DirectoryChange::OwnerLost { .. } => Ask::Configured(Trigger::OwnerLost, tiers),
        DirectoryChange::OwnerChanged { .. } => Ask::Configured(Trigger::OwnerChanged, tiers),
        DirectoryChange::OwnerRestored { .. } => Ask::OwnerRestored,
        DirectoryChange::IdentityCreated
        | DirectoryChange::IdentityUpdated { .. }
        | DirectoryChange::IdentityReactivated { .. }
        | DirectoryChange::GroupCreated
        | DirectoryChange::GroupUpdated { .. }
        | DirectoryChange::GroupDeleted => Ask::Nothing,
    }
}

fn revocation_reason(trigger: Trigger) -> RevocationReason {
    match trigger {
        Trigger::TierGroupRemoved => RevocationReason::GroupRemoved,
        Trigger::GroupChanged => RevocationReason::GroupChanged,
        Trigger::AttributesChanged => RevocationReason::AttributesChanged,
        Trigger::TierGained | Trigger::TierLost => RevocationReason::TierChanged,
        Trigger::OwnerLost => RevocationReason::OwnerLost,
        Trigger::OwnerChanged => RevocationReason::OwnerChanged,
    }
}

impl Policy {
    /// Whether `event` can act on any session. When it cannot, [`evaluate`]
    /// returns no actions whatever the sessions, so a caller need not load
    /// them (most directory writes — creates, a standard user's profile
    /// edits — are such events).
    pub fn acts_on(&self, event: &DirectoryEvent) -> bool {
        match ask(event, self) {
            Ask::Lifecycle(..) | Ask::OwnerRestored => true,
            Ask::Configured(trigger, tiers) => self.effective(tiers).impact(trigger).0 != Impact::None,
            Ask::Nothing => false,
        }
    }

    /// Whether events of this kind can ever act on a session, whatever the
    /// subject's tiers.
    pub fn kind_acts(&self, kind: ChangeKind) -> bool {
        use ChangeKind as K;
        let any = |t: Trigger| Tier::ALL.iter().any(|tier| self.tier(*tier).impact(t) != Impact::None);
        match kind {
            K::IdentityDeactivated | K::IdentityDeleted | K::OwnerRestored => true,
            K::AddedToGroup => any(Trigger::GroupChanged),
            K::RemovedFromGroup => any(Trigger::GroupChanged) || any(Trigger::TierGroupRemoved),
            K::IdentityUpdated => any(Trigger::AttributesChanged),
            K::TierChanged => any(Trigger::TierGained) || any(Trigger::TierLost),
            K::OwnerLost => any(Trigger::OwnerLost),
            K::OwnerChanged => any(Trigger::OwnerChanged),
            K::IdentityCreated
            | K::IdentityReactivated
            | K::GroupCreated
            | K::GroupUpdated
            | K::GroupDeleted => false,
        }
    }

    /// The lifetime cap of a session of an identity in `tiers`, and the
    /// rule that sets it.
    pub fn session_cap(&self, tiers: Tiers) -> Option<(Duration, String)> {
        self.effective(tiers).session_max_ttl.map(|(d, tier)| (d, format!("{tier}.session_max_ttl")))
    }

    /// The lifetime cap of a session or credential of an identity in
    /// `tiers` (`session_max_ttl`, or `credential_max_ttl` for credentials),
    /// and the rule that sets it.
    pub fn lifetime_cap(&self, kind: CredentialKind, tiers: Tiers) -> Option<(Duration, String)> {
        if kind.is_credential() { self.credential_lifetimes(tiers).max } else { self.session_cap(tiers) }
    }

    /// The default lifetime of a credential of an identity in `tiers` and
    /// the longest allowed, each with its rule.
    pub fn credential_lifetimes(&self, tiers: Tiers) -> CredentialLifetimes {
        let e = self.effective(tiers);
        let max = e.credential_max_ttl.map(|(d, t)| (d, format!("{t}.credential_max_ttl")));
        let mut default = match e.credential_ttl {
            Some((d, t)) => (d, format!("{t}.credential_ttl")),
            None => (DEFAULT_CREDENTIAL_TTL, "default credential_ttl".to_owned()),
        };
        if let Some((max, rule)) = &max
            && *max < default.0
        {
            default = (*max, rule.clone());
        }
        CredentialLifetimes { default, max }
    }

    /// The expiry a live session must be brought forward to so that it
    /// respects its tier's lifetime cap (`None`: it already does). Never
    /// extends; never earlier than `now`.
    pub fn capped_expiry(&self, session: &Session, tiers: Tiers, now: Timestamp) -> Option<Timestamp> {
        let (cap, _) = self.lifetime_cap(session.kind, tiers)?;
        let bound = session.issued_at.plus(cap).max(now);
        (session.is_live(now) && bound < session.expires_at).then_some(bound)
    }

    /// The idle timeout of an identity in `tiers`.
    pub fn idle_timeout(&self, tiers: Tiers) -> Option<Duration> {
        self.effective(tiers).idle_timeout.map(|(d, _)| d)
    }
}

/// Lifetime of a credential when no tier sets `credential_ttl`.
pub const DEFAULT_CREDENTIAL_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Credential lifetimes in force for an identity: the default, and the
/// longest a request may ask for, each with the rule that sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialLifetimes {
    /// Lifetime when the request names none.
    pub default: (Duration, String),
    /// The longest allowed (`None`: no limit but the request's).
    pub max: Option<(Duration, String)>,
}

/// Decides the session impact of one directory event.
///
/// `sessions` may contain any sessions; only live sessions (not revoked,
/// not expired at `now`) of the identity the event concerns are acted on,
/// each at most once. Events about a group itself act on nothing:
/// membership changes arrive as events of each member. No action ever makes
/// a revoked session valid again: `Resume` applies only to a suspended one.
pub fn evaluate(event: &DirectoryEvent, policy: &Policy, sessions: &[Session], now: Timestamp) -> Decision {
    let kind = event.change.kind();
    let subject = event.subject.identity();
    let mut seen: Vec<SessionId> = Vec::new();
    let mut affected = Vec::new();
    for s in sessions.iter().filter(|s| Some(s.identity) == subject && s.is_live(now)) {
        if !seen.contains(&s.id) {
            seen.push(s.id);
            affected.push(s);
        }
    }
    let (trigger, tiers) = match ask(event, policy) {
        Ask::Lifecycle(reason, rule) => {
            let actions =
                affected.iter().map(|s| SessionAction::Revoke { session: s.id, reason }).collect::<Vec<_>>();
            let text =
                format!("{kind}: revoke all {} live session(s); this change always revokes", actions.len());
            return Decision { actions, reasons: vec![reason_for(rule.to_owned(), event, text)] };
        }
        Ask::OwnerRestored => {
            let actions: Vec<SessionAction> = affected
                .iter()
                .filter(|s| {
                    matches!(s.state, SessionState::Suspended { condition: SuspendCondition::OwnerLost, .. })
                })
                .map(|s| SessionAction::Resume { session: s.id })
                .collect();
            let text =
                format!("{kind}: an active owner again; resume {} suspended session(s)", actions.len());
            return Decision {
                actions,
                reasons: vec![reason_for("lifecycle.owner_restored".into(), event, text)],
            };
        }
        Ask::Nothing => {
            let text = format!("{kind}: no session impact");
            return Decision { actions: Vec::new(), reasons: vec![reason_for("none".into(), event, text)] };
        }
        Ask::Configured(trigger, tiers) => (trigger, tiers),
    };
    let effective = policy.effective(tiers);
    let (impact, tier) = effective.impact(trigger);
    let (grace, grace_tier) = effective.owner_grace;
    let mut rule = format!("{tier}.{}", trigger.key());
    let mut actions = Vec::new();
    for s in &affected {
        let action = match impact {
            Impact::None => None,
            Impact::Recheck => {
                (!s.state.is_suspended()).then_some(SessionAction::MarkForRecheck { session: s.id })
            }
            Impact::Shorten(ttl) => {
                let bound = event.at.plus(ttl);
                (bound < s.expires_at)
                    .then_some(SessionAction::ShortenExpiry { session: s.id, expires_at: bound })
            }
            Impact::Revoke => {
                Some(SessionAction::Revoke { session: s.id, reason: revocation_reason(trigger) })
            }
            // A credential is itself what renews access: it goes.
            Impact::RevokeRefresh if s.kind.is_credential() => {
                Some(SessionAction::Revoke { session: s.id, reason: revocation_reason(trigger) })
            }
            Impact::RevokeRefresh => Some(SessionAction::RevokeRefresh { session: s.id }),
            Impact::Suspend if grace.is_zero() => {
                rule = format!("{grace_tier}.owner_grace");
                Some(SessionAction::Revoke { session: s.id, reason: RevocationReason::OwnerLost })
            }
            Impact::Suspend => (!s.state.is_suspended()).then_some(SessionAction::Suspend {
                session: s.id,
                condition: SuspendCondition::OwnerLost,
                until: Some(event.at.plus(grace)),
            }),
        };
        actions.extend(action);
    }
    let n = actions.len();
    let text = match impact {
        Impact::None => format!("{kind}: no session impact"),
        _ if n == 0 => format!("{kind}: {impact}, but no live session to act on"),
        Impact::Recheck => format!("{kind}: re-derive the claims of {n} live session(s)"),
        Impact::Shorten(ttl) => {
            format!("{kind}: shorten {n} live session(s) to at most {}", humantime::format_duration(ttl))
        }
        Impact::Revoke => format!("{kind}: revoke {n} live session(s)"),
        Impact::RevokeRefresh => {
            format!("{kind}: end the refresh tokens of {n} live session(s) (credentials are revoked)")
        }
        Impact::Suspend if grace.is_zero() => format!("{kind}: no grace period; revoke {n} live session(s)"),
        Impact::Suspend => format!(
            "{kind}: suspend {n} live session(s) until an active owner is set, for at most {}",
            humantime::format_duration(grace)
        ),
    };
    Decision { actions, reasons: vec![reason_for(rule, event, text)] }
}

fn reason_for(rule: String, event: &DirectoryEvent, text: String) -> Reason {
    Reason { rule, event: event.id, text }
}

/// A suspended session whose grace period has ended is revoked: the
/// condition did not clear in time. Returns the action, if due at `now`.
pub fn grace_ended(session: &Session, now: Timestamp) -> Option<SessionAction> {
    match session.state {
        SessionState::Suspended { until: Some(until), condition, .. }
            if until <= now && session.is_live(now) =>
        {
            let reason = match condition {
                SuspendCondition::OwnerLost => RevocationReason::OwnerLost,
                SuspendCondition::SourceStale => RevocationReason::IdentityDeactivated,
            };
            Some(SessionAction::Revoke { session: session.id, reason })
        }
        _ => None,
    }
}
