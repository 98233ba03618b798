//! What a source's circuit breaker holds, encoded as text for the
//! directory's source state (the store keeps it opaque).
//!
//! One line per item, fields separated by tabs; a list field's items by
//! U+001F. Tabs, newlines, U+001F and backslashes inside a value are
//! escaped, so any string round-trips. Hand-written because the engine has
//! no serialisation dependency and the format is small.

use std::collections::BTreeSet;

use lockstep_domain::IdentityKind;

use super::record::{GroupRecord, Removals, SourceRecord, SourceUpdate, UserRecord};

/// Held changes: updates waiting for approval, in the order they arrived.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Each held update (with no cursor: the cursor moved on when it was
    /// held).
    pub updates: Vec<SourceUpdate>,
    /// When the first of them was held.
    pub since: Option<lockstep_domain::Timestamp>,
    /// Deactivations and deletions they hold (counted when held: a
    /// complete update's removals are known only against the directory).
    pub losses: usize,
}

impl Held {
    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1f}' => out.push_str("\\u"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('u') => out.push('\u{1f}'),
            other => return Err(format!("bad escape \\{other:?}")),
        }
    }
    Ok(out)
}

fn list(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    items.into_iter().map(|i| escape(i.as_ref())).collect::<Vec<_>>().join("\u{1f}")
}

fn unlist(field: &str) -> Result<Vec<String>, String> {
    if field.is_empty() {
        return Ok(Vec::new());
    }
    field.split('\u{1f}').map(unescape).collect()
}

fn opt(value: Option<&str>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("+{}", escape(v)))
}

fn unopt(field: &str) -> Result<Option<String>, String> {
    match field.strip_prefix('+') {
        Some(v) => unescape(v).map(Some),
        None if field == "-" => Ok(None),
        None => Err(format!("bad optional field {field:?}")),
    }
}

/// Encodes held updates.
pub fn encode(held: &Held) -> String {
    let mut out = String::new();
    if let Some(since) = held.since {
        out.push_str(&format!("since\t{}\n", since.micros()));
    }
    out.push_str(&format!("losses\t{}\n", held.losses));
    for update in &held.updates {
        let removals = match &update.removals {
            Removals::Keys(_) => "keys",
            Removals::AllExcept { .. } => "all_except",
        };
        out.push_str(&format!("update\t{removals}\t{}\n", update.complete));
        for record in &update.upserts {
            match record {
                SourceRecord::User(u) => out.push_str(&format!(
                    "user\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    escape(&u.key),
                    escape(&u.user_name),
                    opt(u.display_name.as_deref()),
                    list(&u.emails),
                    u.active,
                    u.kind.as_str(),
                    opt(u.owner_key.as_deref()),
                    escape(&u.profile),
                )),
                SourceRecord::Group(g) => out.push_str(&format!(
                    "group\t{}\t{}\t{}\n",
                    escape(&g.key),
                    escape(&g.display_name),
                    list(&g.member_keys)
                )),
            }
        }
        match &update.removals {
            Removals::Keys(keys) => {
                for key in keys {
                    out.push_str(&format!("removed\t{}\n", escape(key)));
                }
            }
            Removals::AllExcept { present } => {
                for key in present {
                    out.push_str(&format!("present\t{}\n", escape(key)));
                }
            }
        }
    }
    out
}

/// Decodes what [`encode`] wrote.
pub fn decode(text: &str) -> Result<Held, String> {
    let mut held = Held::default();
    for (n, line) in text.lines().enumerate() {
        let bad = |what: String| format!("held changes, line {}: {what}", n + 1);
        let fields: Vec<&str> = line.split('\t').collect();
        let current = held.updates.last_mut();
        match (fields.as_slice(), current) {
            (["since", at], _) => {
                held.since = Some(lockstep_domain::Timestamp(
                    at.parse().map_err(|_| bad(format!("bad time {at:?}")))?,
                ));
            }
            (["losses", n], _) => held.losses = n.parse().map_err(|_| bad(format!("bad count {n:?}")))?,
            (["update", removals, complete], _) => held.updates.push(SourceUpdate {
                upserts: Vec::new(),
                removals: match *removals {
                    "keys" => Removals::Keys(Vec::new()),
                    "all_except" => Removals::AllExcept { present: BTreeSet::new() },
                    other => return Err(bad(format!("bad removals {other:?}"))),
                },
                cursor: None,
                complete: *complete == "true",
            }),
            (
                ["user", key, user_name, display_name, emails, active, kind, owner_key, profile],
                Some(update),
            ) => {
                update.upserts.push(SourceRecord::User(UserRecord {
                    key: unescape(key).map_err(bad)?,
                    user_name: unescape(user_name).map_err(bad)?,
                    display_name: unopt(display_name).map_err(bad)?,
                    emails: unlist(emails).map_err(bad)?,
                    active: *active == "true",
                    kind: kind.parse::<IdentityKind>().map_err(|e| bad(e.to_string()))?,
                    owner_key: unopt(owner_key).map_err(bad)?,
                    profile: unescape(profile).map_err(bad)?,
                }));
            }
            (["group", key, name, members], Some(update)) => {
                update.upserts.push(SourceRecord::Group(GroupRecord {
                    key: unescape(key).map_err(bad)?,
                    display_name: unescape(name).map_err(bad)?,
                    member_keys: unlist(members).map_err(bad)?.into_iter().collect(),
                }));
            }
            (["removed", key], Some(update)) => match &mut update.removals {
                Removals::Keys(keys) => keys.push(unescape(key).map_err(bad)?),
                Removals::AllExcept { .. } => return Err(bad("a removed key in a complete update".into())),
            },
            (["present", key], Some(update)) => match &mut update.removals {
                Removals::AllExcept { present } => {
                    present.insert(unescape(key).map_err(bad)?);
                }
                Removals::Keys(_) => return Err(bad("a present key in a delta".into())),
            },
            _ => return Err(bad(format!("unexpected line {line:?}"))),
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(key: &str, name: &str) -> SourceRecord {
        SourceRecord::User(UserRecord {
            key: key.into(),
            user_name: name.into(),
            display_name: Some("Tab\there, new\nline, back\\slash, \u{1f}unit".into()),
            emails: vec!["a@example.com".into(), "b\t@example.com".into()],
            active: false,
            kind: IdentityKind::ServiceAccount,
            owner_key: Some("owner-1".into()),
            profile: r#"{"name":{"givenName":"A"}}"#.into(),
        })
    }

    #[test]
    fn held_updates_round_trip() {
        let held = Held {
            since: Some(lockstep_domain::Timestamp(42)),
            losses: 7,
            updates: vec![
                SourceUpdate {
                    upserts: vec![
                        user("k1", "alice"),
                        SourceRecord::Group(GroupRecord {
                            key: "g1".into(),
                            display_name: "admins".into(),
                            member_keys: ["k1".to_owned(), "k2".to_owned()].into(),
                        }),
                    ],
                    removals: Removals::AllExcept { present: ["k3".to_owned()].into() },
                    cursor: None,
                    complete: true,
                },
                SourceUpdate::delta(Vec::new(), vec!["k4".into(), "k\t5".into()]),
                SourceUpdate::delta(
                    vec![SourceRecord::Group(GroupRecord {
                        key: "g2".into(),
                        display_name: "empty".into(),
                        member_keys: BTreeSet::new(),
                    })],
                    Vec::new(),
                ),
            ],
        };
        assert_eq!(decode(&encode(&held)), Ok(held));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in
            ["user\tx", "update\tnope\ttrue", "removed\tk", "since\tx", "update\tkeys\ttrue\npresent\tk"]
        {
            assert!(decode(text).is_err(), "{text:?}");
        }
    }
}
