//! Column encodings. No serde here: every column is a plain SQL value, so the
//! files stay readable with the `sqlite3` shell.

use std::str::FromStr;

use lockstep_domain::{
    DirectoryChange, DirectoryEventId, GroupId, IdentityId, IdentityStatus, RevocationReason, SessionState,
    Timestamp,
};
use lockstep_store::StoreError;

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn parse<T: FromStr>(what: &str, s: &str) -> Result<T, StoreError> {
    s.parse().map_err(|_| corrupt(format!("bad {what}: {s:?}")))
}

/// `(kind, detail)` columns of a directory change.
pub(crate) fn encode_change(change: &DirectoryChange) -> (&'static str, String) {
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
        DirectoryChange::OwnerChanged { from, to } => {
            let show = |o: &Option<IdentityId>| o.map_or_else(|| "-".to_owned(), |o| o.to_string());
            format!("{}>{}", show(from), show(to))
        }
    };
    (kind, detail)
}

pub(crate) fn decode_change(kind: &str, detail: &str) -> Result<DirectoryChange, StoreError> {
    use lockstep_domain::ChangeKind as K;
    Ok(match parse::<K>("change kind", kind)? {
        K::IdentityCreated => DirectoryChange::IdentityCreated,
        K::IdentityDeleted => DirectoryChange::IdentityDeleted,
        K::IdentityUpdated => DirectoryChange::IdentityUpdated {
            changed: detail.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        },
        K::IdentityDeactivated => {
            let (from, to) = detail.split_once('>').ok_or_else(|| corrupt(detail))?;
            DirectoryChange::IdentityDeactivated {
                from: parse::<IdentityStatus>("status", from)?,
                to: parse::<IdentityStatus>("status", to)?,
            }
        }
        K::IdentityReactivated => {
            DirectoryChange::IdentityReactivated { from: parse::<IdentityStatus>("status", detail)? }
        }
        K::OwnerChanged => {
            let (from, to) = detail.split_once('>').ok_or_else(|| corrupt(detail))?;
            let owner = |o: &str| match o {
                "-" => Ok(None),
                id => parse::<IdentityId>("owner id", id).map(Some),
            };
            DirectoryChange::OwnerChanged { from: owner(from)?, to: owner(to)? }
        }
        K::GroupCreated => DirectoryChange::GroupCreated,
        K::GroupDeleted => DirectoryChange::GroupDeleted,
        K::GroupUpdated => DirectoryChange::GroupUpdated {
            changed: detail.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        },
        K::AddedToGroup | K::RemovedFromGroup => {
            let (group, group_name) = detail.split_once(' ').unwrap_or((detail, ""));
            let group = parse::<GroupId>("group id", group)?;
            let group_name = group_name.to_owned();
            if kind == K::AddedToGroup.as_str() {
                DirectoryChange::AddedToGroup { group, group_name }
            } else {
                DirectoryChange::RemovedFromGroup { group, group_name }
            }
        }
    })
}

/// Columns `(state, revoked_at, reason, cause)` of a session state.
pub(crate) type StateColumns = (&'static str, Option<i64>, Option<&'static str>, Option<i64>);

pub(crate) fn encode_state(state: &SessionState) -> StateColumns {
    match state {
        SessionState::Active => ("active", None, None, None),
        SessionState::NeedsRecheck => ("needs_recheck", None, None, None),
        SessionState::Revoked { at, reason, cause } => (
            "revoked",
            Some(at.micros()),
            Some(reason.as_str()),
            cause.map(|c| i64::try_from(c.0).unwrap_or(i64::MAX)),
        ),
    }
}

pub(crate) fn decode_state(
    state: &str,
    revoked_at: Option<i64>,
    reason: Option<String>,
    cause: Option<i64>,
) -> Result<SessionState, StoreError> {
    match state {
        "active" => Ok(SessionState::Active),
        "needs_recheck" => Ok(SessionState::NeedsRecheck),
        "revoked" => Ok(SessionState::Revoked {
            at: Timestamp(revoked_at.ok_or_else(|| corrupt("revoked without time"))?),
            reason: parse::<RevocationReason>("reason", &reason.unwrap_or_default())?,
            cause: cause.map(|c| DirectoryEventId(c.unsigned_abs())),
        }),
        other => Err(corrupt(format!("bad session state {other:?}"))),
    }
}

pub(crate) fn seq_to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A list of strings as one column: each escaped (`\` → `\\`, newline →
/// `\n`) and terminated by a newline, so any list round-trips (`[""]` is
/// one newline, `[]` the empty string).
pub(crate) fn encode_list(items: &[String]) -> String {
    items.iter().map(|i| format!("{}\n", i.replace('\\', "\\\\").replace('\n', "\\n"))).collect()
}

/// The inverse of [`encode_list`].
pub(crate) fn decode_list(column: &str) -> Vec<String> {
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
mod list_tests {
    use super::*;

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
}
