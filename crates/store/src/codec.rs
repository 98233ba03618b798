//! Text encodings of domain values for SQL backends. No serde: every column
//! is a plain SQL value, readable with the database's own shell, and every
//! backend (SQLite today, PostgreSQL next) writes the same encoding.

use std::str::FromStr;

use lockstep_domain::{
    DirectoryChange, DirectoryEventId, GroupId, IdentityId, IdentityStatus, RevocationReason, SessionState,
    SuspendCondition, Tiers, Timestamp,
};

use crate::StoreError;

/// A stored value could not be decoded.
pub fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Parses a stored value, naming what it should have been.
pub fn parse<T: FromStr>(what: &str, s: &str) -> Result<T, StoreError> {
    s.parse().map_err(|_| corrupt(format!("bad {what}: {s:?}")))
}

/// A position or version as an SQL integer.
pub fn seq_to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn ids(list: &[IdentityId]) -> String {
    list.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

fn parse_ids(s: &str) -> Result<Vec<IdentityId>, StoreError> {
    s.split_whitespace().map(|id| parse::<IdentityId>("identity id", id)).collect()
}

/// A list of identity ids as one column (space-separated).
pub fn encode_ids(list: &[IdentityId]) -> String {
    ids(list)
}

/// The inverse of [`encode_ids`].
pub fn decode_ids(column: &str) -> Result<Vec<IdentityId>, StoreError> {
    parse_ids(column)
}

/// `(kind, detail)` columns of a directory change.
pub fn encode_change(change: &DirectoryChange) -> (&'static str, String) {
    let kind = change.kind().as_str();
    let detail = match change {
        DirectoryChange::IdentityCreated
        | DirectoryChange::IdentityDeleted
        | DirectoryChange::GroupCreated
        | DirectoryChange::GroupDeleted => String::new(),
        DirectoryChange::IdentityUpdated { changed } | DirectoryChange::GroupUpdated { changed } => {
            changed.join(",")
        }
        DirectoryChange::AddedToGroup { group, group_name }
        | DirectoryChange::RemovedFromGroup { group, group_name } => {
            format!("{group} {group_name}")
        }
        DirectoryChange::IdentityDeactivated { from, to } => format!("{from}>{to}"),
        DirectoryChange::IdentityReactivated { from } => from.to_string(),
        DirectoryChange::OwnerChanged { from, to } => format!("{}>{}", ids(from), ids(to)),
        DirectoryChange::OwnerLost { owner } => owner.map(|o| o.to_string()).unwrap_or_default(),
        DirectoryChange::OwnerRestored { owner } => owner.to_string(),
        DirectoryChange::TierChanged { from, to } => format!("{from}>{to}"),
    };
    (kind, detail)
}

/// The inverse of [`encode_change`].
pub fn decode_change(kind: &str, detail: &str) -> Result<DirectoryChange, StoreError> {
    use lockstep_domain::ChangeKind as K;
    let pair = || detail.split_once('>').ok_or_else(|| corrupt(detail));
    Ok(match parse::<K>("change kind", kind)? {
        K::IdentityCreated => DirectoryChange::IdentityCreated,
        K::IdentityDeleted => DirectoryChange::IdentityDeleted,
        K::IdentityUpdated => DirectoryChange::IdentityUpdated {
            changed: detail.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        },
        K::IdentityDeactivated => {
            let (from, to) = pair()?;
            DirectoryChange::IdentityDeactivated {
                from: parse::<IdentityStatus>("status", from)?,
                to: parse::<IdentityStatus>("status", to)?,
            }
        }
        K::IdentityReactivated => {
            DirectoryChange::IdentityReactivated { from: parse::<IdentityStatus>("status", detail)? }
        }
        K::OwnerChanged => {
            let (from, to) = pair()?;
            DirectoryChange::OwnerChanged { from: parse_ids(from)?, to: parse_ids(to)? }
        }
        K::OwnerLost => DirectoryChange::OwnerLost {
            owner: (!detail.is_empty()).then(|| parse::<IdentityId>("owner id", detail)).transpose()?,
        },
        K::OwnerRestored => {
            DirectoryChange::OwnerRestored { owner: parse::<IdentityId>("owner id", detail)? }
        }
        K::TierChanged => {
            let (from, to) = pair()?;
            DirectoryChange::TierChanged {
                from: parse::<Tiers>("tiers", from)?,
                to: parse::<Tiers>("tiers", to)?,
            }
        }
        K::GroupCreated => DirectoryChange::GroupCreated,
        K::GroupDeleted => DirectoryChange::GroupDeleted,
        K::GroupUpdated => DirectoryChange::GroupUpdated {
            changed: detail.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        },
        k @ (K::AddedToGroup | K::RemovedFromGroup) => {
            let (group, group_name) = detail.split_once(' ').unwrap_or((detail, ""));
            let group = parse::<GroupId>("group id", group)?;
            let group_name = group_name.to_owned();
            if k == K::AddedToGroup {
                DirectoryChange::AddedToGroup { group, group_name }
            } else {
                DirectoryChange::RemovedFromGroup { group, group_name }
            }
        }
    })
}

/// Columns of a session state: `(state, state_at, reason, cause, until)`.
/// `state_at` is when it was revoked or suspended; `reason` the revocation
/// reason or the suspension condition.
pub type StateColumns = (&'static str, Option<i64>, Option<&'static str>, Option<i64>, Option<i64>);

/// The columns of a session state.
pub fn encode_state(state: &SessionState) -> StateColumns {
    let cause = |c: &Option<DirectoryEventId>| c.map(|c| seq_to_sql(c.0));
    match state {
        SessionState::Active => ("active", None, None, None, None),
        SessionState::NeedsRecheck => ("needs_recheck", None, None, None, None),
        SessionState::Suspended { at, condition, cause: c, until } => {
            ("suspended", Some(at.micros()), Some(condition.as_str()), cause(c), until.map(|u| u.micros()))
        }
        SessionState::Revoked { at, reason, cause: c } => {
            ("revoked", Some(at.micros()), Some(reason.as_str()), cause(c), None)
        }
    }
}

/// The inverse of [`encode_state`].
pub fn decode_state(
    state: &str,
    at: Option<i64>,
    reason: Option<&str>,
    cause: Option<i64>,
    until: Option<i64>,
) -> Result<SessionState, StoreError> {
    let cause = cause.map(|c| DirectoryEventId(c.unsigned_abs()));
    let at = || at.map(Timestamp).ok_or_else(|| corrupt(format!("{state} session without a time")));
    match state {
        "active" => Ok(SessionState::Active),
        "needs_recheck" => Ok(SessionState::NeedsRecheck),
        "suspended" => Ok(SessionState::Suspended {
            at: at()?,
            condition: parse::<SuspendCondition>("condition", reason.unwrap_or_default())?,
            cause,
            until: until.map(Timestamp),
        }),
        "revoked" => Ok(SessionState::Revoked {
            at: at()?,
            reason: parse::<RevocationReason>("reason", reason.unwrap_or_default())?,
            cause,
        }),
        other => Err(corrupt(format!("bad session state {other:?}"))),
    }
}

/// A list of strings as one column: each escaped (`\` → `\\`, newline →
/// `\n`) and terminated by a newline, so any list round-trips (`[""]` is
/// one newline, `[]` the empty string).
pub fn encode_list(items: &[String]) -> String {
    items.iter().map(|i| format!("{}\n", i.replace('\\', "\\\\").replace('\n', "\\n"))).collect()
}

/// The inverse of [`encode_list`].
pub fn decode_list(column: &str) -> Vec<String> {
    column
        .split_terminator('\n')
        .map(|item| {
            let mut out = String::with_capacity(item.len());
            let mut chars = item.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn lists_round_trip() {
        for items in [
            vec![],
            vec![String::new()],
            vec!["a@b".to_owned()],
            vec!["x\ny".into(), "back\\slash\\n".into(), "".into()],
        ] {
            assert_eq!(decode_list(&encode_list(&items)), items, "{items:?}");
        }
    }

    #[test]
    fn every_change_and_state_round_trips() {
        let id = |n| IdentityId::from_uuid(Uuid::from_u128(n));
        let group = GroupId::from_uuid(Uuid::from_u128(9));
        let both = Tiers { privileged: true, non_human: true };
        let changes = vec![
            DirectoryChange::IdentityCreated,
            DirectoryChange::IdentityUpdated { changed: vec!["userName".into(), "riskTier".into()] },
            DirectoryChange::IdentityDeactivated {
                from: IdentityStatus::Active,
                to: IdentityStatus::Suspended,
            },
            DirectoryChange::IdentityReactivated { from: IdentityStatus::Disabled },
            DirectoryChange::IdentityDeleted,
            DirectoryChange::OwnerChanged { from: vec![], to: vec![id(1), id(2)] },
            DirectoryChange::OwnerLost { owner: Some(id(1)) },
            DirectoryChange::OwnerLost { owner: None },
            DirectoryChange::OwnerRestored { owner: id(3) },
            DirectoryChange::TierChanged { from: Tiers::STANDARD, to: both },
            DirectoryChange::AddedToGroup { group, group_name: "prod admins".into() },
            DirectoryChange::RemovedFromGroup { group, group_name: "".into() },
            DirectoryChange::GroupCreated,
            DirectoryChange::GroupUpdated { changed: vec!["displayName".into()] },
            DirectoryChange::GroupDeleted,
        ];
        for change in changes {
            let (kind, detail) = encode_change(&change);
            assert_eq!(decode_change(kind, &detail).unwrap(), change);
        }
        let states = [
            SessionState::Active,
            SessionState::NeedsRecheck,
            SessionState::Suspended {
                at: Timestamp(5),
                condition: SuspendCondition::OwnerLost,
                cause: Some(DirectoryEventId(3)),
                until: Some(Timestamp(9)),
            },
            SessionState::Revoked { at: Timestamp(7), reason: RevocationReason::SessionLimit, cause: None },
        ];
        for state in states {
            let (s, at, reason, cause, until) = encode_state(&state);
            assert_eq!(decode_state(s, at, reason, cause, until).unwrap(), state);
        }
    }
}
