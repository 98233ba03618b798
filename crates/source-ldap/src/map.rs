//! Entry → record mapping: pure, data-driven, no I/O.
//!
//! Everything here works on [`RawEntry`] (bytes as the server sent them)
//! and returns records or a [`Skip`] reason. A bad entry is never fatal:
//! the caller logs the reason with the DN, counts it, and carries on.

use std::collections::{BTreeSet, HashMap};

use lockstep_domain::IdentityKind;
use lockstep_engine::sources::{GroupRecord, UserRecord};
use uuid::Uuid;

use crate::ber::RawEntry;

/// Which attributes carry what. Names are matched case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The login name (`uid`; AD `sAMAccountName`).
    pub user_name: String,
    /// E-mail addresses (`mail`), every value, primary first.
    pub email: String,
    /// Display name (`cn`; AD `displayName`).
    pub display_name: String,
    /// Profile `name.givenName`.
    pub given_name: String,
    /// Profile `name.familyName`.
    pub family_name: String,
    /// The stable key (`entryUUID`; AD `objectGUID`, 16 raw bytes).
    pub key: String,
    /// Group member DNs.
    pub member: String,
    /// Group display name.
    pub group_name: String,
    /// Active Directory semantics: `userAccountControl` bit 0x2 means
    /// disabled, `isDeleted=TRUE` means removed, `objectClass=computer`
    /// entries are not users.
    pub active_directory: bool,
}

impl Mapping {
    /// OpenLDAP / inetOrgPerson defaults.
    pub fn openldap() -> Self {
        Self {
            user_name: "uid".into(),
            email: "mail".into(),
            display_name: "cn".into(),
            given_name: "givenName".into(),
            family_name: "sn".into(),
            key: "entryUUID".into(),
            member: "member".into(),
            group_name: "cn".into(),
            active_directory: false,
        }
    }

    /// Active Directory defaults.
    pub fn active_directory() -> Self {
        Self {
            user_name: "sAMAccountName".into(),
            display_name: "displayName".into(),
            key: "objectGUID".into(),
            active_directory: true,
            ..Self::openldap()
        }
    }

    /// Attributes to request for user entries.
    pub fn user_attrs(&self) -> Vec<String> {
        let mut v = vec![
            self.user_name.clone(),
            self.email.clone(),
            self.display_name.clone(),
            self.given_name.clone(),
            self.family_name.clone(),
            self.key.clone(),
            "objectClass".into(),
        ];
        if self.active_directory {
            v.extend([
                "userAccountControl".into(),
                "accountExpires".into(),
                "isDeleted".into(),
                "lastKnownParent".into(),
            ]);
        }
        dedup(v)
    }

    /// Attributes to request for group entries.
    pub fn group_attrs(&self) -> Vec<String> {
        let mut v =
            vec![self.group_name.clone(), self.member.clone(), self.key.clone(), "objectClass".into()];
        if self.active_directory {
            v.extend(["isDeleted".into(), "lastKnownParent".into()]);
        }
        dedup(v)
    }

    /// Whether the key attribute holds a binary AD GUID.
    fn key_is_guid(&self) -> bool {
        self.key.eq_ignore_ascii_case("objectGUID")
    }
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    v.into_iter().filter(|a| seen.insert(a.to_ascii_lowercase())).collect()
}

/// Why an entry produced no record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// The user has no login-name attribute.
    #[error("no {0} attribute (user name)")]
    MissingUserName(String),
    /// No key attribute (or control UUID).
    #[error("no {0} attribute (key)")]
    MissingKey(String),
    /// A key that is not a UUID/GUID of the expected shape.
    #[error("{0} is not a valid key")]
    BadKey(String),
    /// An AD computer account (matches `objectClass=user`).
    #[error("computer account")]
    Computer,
    /// Windows returned ranged `member` values (over 1,500 members): the
    /// connector does not fetch further ranges, so it refuses the group
    /// rather than shrink it.
    #[error("group has ranged {0} values (more than 1500 members): not supported")]
    RangedMembers(String),
}

/// The hyphenated lowercase text of a 16-byte UUID in RFC 4122 byte order
/// (the syncrepl control's `entryUUID`), equal to slapd's `entryUUID` text.
pub fn uuid_text(bytes: &[u8]) -> Option<String> {
    Uuid::from_slice(bytes).ok().map(|u| u.hyphenated().to_string())
}

/// The text of an AD `objectGUID`: its first three fields are
/// little-endian on the wire.
pub fn guid_text(bytes: &[u8]) -> Option<String> {
    Uuid::from_slice_le(bytes).ok().map(|u| u.hyphenated().to_string())
}

/// The entry's key from its key attribute.
pub fn entry_key(entry: &RawEntry, mapping: &Mapping) -> Result<String, Skip> {
    let v = entry.values(&mapping.key).first().ok_or_else(|| Skip::MissingKey(mapping.key.clone()))?;
    if mapping.key_is_guid() {
        return guid_text(v).ok_or_else(|| Skip::BadKey(mapping.key.clone()));
    }
    match std::str::from_utf8(v) {
        Ok(text) => {
            let text = text.trim();
            if text.is_empty() {
                return Err(Skip::BadKey(mapping.key.clone()));
            }
            Ok(Uuid::parse_str(text).map(|u| u.hyphenated().to_string()).unwrap_or_else(|_| text.to_owned()))
        }
        Err(_) => uuid_text(v).ok_or_else(|| Skip::BadKey(mapping.key.clone())),
    }
}

/// Whether an AD entry is a tombstone (`isDeleted=TRUE`).
pub fn is_tombstone(entry: &RawEntry) -> bool {
    entry.has_value_ci("isDeleted", "TRUE")
}

/// Whether an entry is an AD computer account.
pub fn is_computer(entry: &RawEntry) -> bool {
    entry.has_value_ci("objectClass", "computer")
}

/// Whether an entry is a group by its object class (AD `group`, LDAP
/// `groupOfNames`/`groupOfUniqueNames`/`posixGroup`); used only where one
/// search returns both kinds (the AD delta).
pub fn is_group_entry(entry: &RawEntry) -> bool {
    ["group", "groupOfNames", "groupOfUniqueNames", "posixGroup"]
        .iter()
        .any(|c| entry.has_value_ci("objectClass", c))
}

/// Whether AD says the account is disabled (`userAccountControl` & 0x2).
pub fn ad_disabled(entry: &RawEntry) -> bool {
    entry
        .first_text("userAccountControl")
        .and_then(|t| t.trim().parse::<i64>().ok())
        .is_some_and(|uac| uac & 2 != 0)
}

/// `now` as Active Directory's FILETIME: 100-nanosecond ticks since
/// 1601-01-01 UTC (the unit of `accountExpires`).
pub fn filetime(now: lockstep_domain::Timestamp) -> i64 {
    now.micros().saturating_mul(10).saturating_add(116_444_736_000_000_000)
}

/// Whether an AD user's `accountExpires` has passed by `now`: such an
/// account cannot sign in although `userAccountControl` still says
/// enabled (how a contractor's end date is usually set). 0 and the
/// largest value both mean "never".
pub fn ad_expired(entry: &RawEntry, now: lockstep_domain::Timestamp) -> bool {
    entry
        .first_text("accountExpires")
        .and_then(|t| t.trim().parse::<i64>().ok())
        .is_some_and(|at| at > 0 && at != i64::MAX && at <= filetime(now))
}

/// The profile document: `{"name":{"familyName":..,"givenName":..}}` with
/// only the present keys, or `{}`. Built by hand (not via a JSON map) so
/// the key order, and therefore equality of unchanged entries, does not
/// depend on serde_json's `preserve_order` feature anywhere in a build.
pub fn render_profile(given: Option<&str>, family: Option<&str>) -> String {
    let mut fields = Vec::new();
    if let Some(f) = family {
        fields.push(format!("\"familyName\":{}", serde_json::Value::String(f.to_owned())));
    }
    if let Some(g) = given {
        fields.push(format!("\"givenName\":{}", serde_json::Value::String(g.to_owned())));
    }
    if fields.is_empty() { "{}".to_owned() } else { format!("{{\"name\":{{{}}}}}", fields.join(",")) }
}

/// Maps a user entry. `key` comes from the caller (the syncrepl control's
/// UUID, or [`entry_key`]); `disabled_by_filter` from the caller's search
/// for the configured disabled filter.
pub fn map_user(
    entry: &RawEntry,
    key: String,
    mapping: &Mapping,
    disabled_by_filter: bool,
) -> Result<UserRecord, Skip> {
    if mapping.active_directory && is_computer(entry) {
        return Err(Skip::Computer);
    }
    let user_name = entry
        .first_text(&mapping.user_name)
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| Skip::MissingUserName(mapping.user_name.clone()))?;
    let display_name = entry.first_text(&mapping.display_name).filter(|d| !d.is_empty());
    let emails = entry.texts(&mapping.email).into_iter().filter(|e| !e.is_empty()).collect();
    let ad_off = mapping.active_directory && ad_disabled(entry);
    let profile = render_profile(
        entry.first_text(&mapping.given_name).as_deref(),
        entry.first_text(&mapping.family_name).as_deref(),
    );
    Ok(UserRecord {
        key,
        user_name,
        display_name,
        emails,
        active: !(disabled_by_filter || ad_off),
        kind: IdentityKind::Human,
        owner_key: None,
        profile,
    })
}

/// The member DNs of a group entry. A ranged attribute still incomplete
/// (`member;range=0-1499`) is refused: the connector completes ranges
/// (`complete_ranged`) before it maps, so one here is a bug, not a group
/// to sync with a part of its members.
pub fn member_dns(entry: &RawEntry, mapping: &Mapping) -> Result<Vec<String>, Skip> {
    let ranged = format!("{};range=", mapping.member.to_ascii_lowercase());
    if entry.attrs.keys().any(|k| k.starts_with(&ranged)) {
        return Err(Skip::RangedMembers(mapping.member.clone()));
    }
    Ok(entry.texts(&mapping.member))
}

/// Maps a group entry, resolving member DNs to user keys through `index`;
/// DNs it does not know (outside the user base, nested groups, foreign
/// principals) are left out.
pub fn map_group(
    entry: &RawEntry,
    key: String,
    mapping: &Mapping,
    index: &DnIndex,
) -> Result<GroupRecord, Skip> {
    let members = member_dns(entry, mapping)?;
    let display_name =
        entry.first_text(&mapping.group_name).filter(|n| !n.is_empty()).unwrap_or_else(|| entry.dn.clone());
    let member_keys = members.iter().filter_map(|dn| index.user_key(dn)).map(str::to_owned).collect();
    Ok(GroupRecord { key, display_name, member_keys })
}

/// Normalises a DN for comparison: lowercase, no spaces around the `,`,
/// `+` and `=` separators (escaped ones are kept as they are).
pub fn normalize_dn(dn: &str) -> String {
    fn flush(cur: &mut String, sep: Option<char>, out: &mut String) {
        out.push_str(&cur.trim().to_lowercase());
        if let Some(s) = sep {
            out.push(s);
        }
        cur.clear();
    }
    let mut out = String::with_capacity(dn.len());
    let mut cur = String::new();
    let mut escaped = false;
    for ch in dn.chars() {
        if escaped {
            cur.push(ch);
            escaped = false;
            continue;
        }
        match ch {
            '\\' => {
                cur.push(ch);
                escaped = true;
            }
            ',' | '+' | '=' => flush(&mut cur, Some(ch), &mut out),
            _ => cur.push(ch),
        }
    }
    flush(&mut cur, None, &mut out);
    out
}

/// Whether normalised `dn` is `base` or below it.
pub fn dn_is_under(dn: &str, base: &str) -> bool {
    dn == base || (dn.len() > base.len() && dn.ends_with(base) && dn[..dn.len() - base.len()].ends_with(','))
}

/// The connector's memory of the source's objects: user DN → key (to
/// resolve group members, which are DNs) and the group keys. Built from
/// every user entry the connector sees, and at a syncrepl start from a
/// key-only listing, because a refresh from a cookie omits unchanged users.
#[derive(Clone, Debug, Default)]
pub struct DnIndex {
    by_dn: HashMap<String, String>,
    users: HashMap<String, String>,
    groups: BTreeSet<String>,
}

impl DnIndex {
    /// Records a user at a DN (replacing its previous DN: a rename).
    pub fn insert_user(&mut self, key: &str, dn: &str) {
        let norm = normalize_dn(dn);
        if let Some(old) = self.users.insert(key.to_owned(), norm.clone())
            && old != norm
            && self.by_dn.get(&old).is_some_and(|k| k == key)
        {
            self.by_dn.remove(&old);
        }
        self.by_dn.insert(norm, key.to_owned());
    }

    /// Records a group key.
    pub fn insert_group(&mut self, key: &str) {
        self.groups.insert(key.to_owned());
    }

    /// Forgets a key of either kind.
    pub fn remove(&mut self, key: &str) {
        if let Some(dn) = self.users.remove(key)
            && self.by_dn.get(&dn).is_some_and(|k| k == key)
        {
            self.by_dn.remove(&dn);
        }
        self.groups.remove(key);
    }

    /// The key of the user at `dn`.
    pub fn user_key(&self, dn: &str) -> Option<&str> {
        self.by_dn.get(&normalize_dn(dn)).map(String::as_str)
    }

    /// The normalised DN of the user with `key`.
    pub fn user_dn(&self, key: &str) -> Option<&str> {
        self.users.get(key).map(String::as_str)
    }

    /// Every known user key.
    pub fn user_keys(&self) -> impl Iterator<Item = &String> {
        self.users.keys()
    }

    /// Every known group key.
    pub fn group_keys(&self) -> impl Iterator<Item = &String> {
        self.groups.iter()
    }

    /// Whether the key is a known user.
    pub fn is_user(&self, key: &str) -> bool {
        self.users.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dn: &str, attrs: &[(&str, &[&[u8]])]) -> RawEntry {
        let mut e = RawEntry { dn: dn.into(), ..Default::default() };
        for (k, vs) in attrs {
            e.attrs.entry(k.to_ascii_lowercase()).or_default().extend(vs.iter().map(|v| v.to_vec()));
        }
        e
    }

    /// user_name, display_name, emails, active, profile
    type Want = (&'static str, Option<&'static str>, &'static [&'static str], bool, &'static str);

    struct Case {
        name: &'static str,
        mapping: Mapping,
        entry: RawEntry,
        disabled_by_filter: bool,
        want: Result<Want, Skip>,
    }

    #[test]
    fn user_mapping_cases() {
        let ol = Mapping::openldap;
        let ad = Mapping::active_directory;
        let cases = vec![
            Case {
                name: "full inetOrgPerson",
                mapping: ol(),
                entry: entry(
                    "uid=alice,ou=people,dc=example,dc=com",
                    &[
                        ("uid", &[b"alice"]),
                        ("mail", &[b"alice@example.com", b"a@example.org"]),
                        ("cn", &[b"Alice Example"]),
                        ("givenName", &[b"Alice"]),
                        ("sn", &[b"Example"]),
                    ],
                ),
                disabled_by_filter: false,
                want: Ok((
                    "alice",
                    Some("Alice Example"),
                    &["alice@example.com", "a@example.org"],
                    true,
                    r#"{"name":{"familyName":"Example","givenName":"Alice"}}"#,
                )),
            },
            Case {
                name: "only sn, disabled by filter",
                mapping: ol(),
                entry: entry("uid=b,dc=x", &[("UID", &[b"b"]), ("SN", &[b"Qu\"ote"])]),
                disabled_by_filter: true,
                want: Ok(("b", None, &[], false, r#"{"name":{"familyName":"Qu\"ote"}}"#)),
            },
            Case {
                name: "no name parts",
                mapping: ol(),
                entry: entry("uid=c,dc=x", &[("uid", &[b"c"])]),
                disabled_by_filter: false,
                want: Ok(("c", None, &[], true, "{}")),
            },
            Case {
                name: "missing uid",
                mapping: ol(),
                entry: entry("cn=d,dc=x", &[("cn", &[b"d"])]),
                disabled_by_filter: false,
                want: Err(Skip::MissingUserName("uid".into())),
            },
            Case {
                name: "AD enabled (512)",
                mapping: ad(),
                entry: entry(
                    "CN=Bob,CN=Users,DC=lockstep,DC=test",
                    &[
                        ("sAMAccountName", &[b"bob"]),
                        ("displayName", &[b"Bob B"]),
                        ("userAccountControl", &[b"512"]),
                        ("objectClass", &[b"top", b"person", b"user"]),
                    ],
                ),
                disabled_by_filter: false,
                want: Ok(("bob", Some("Bob B"), &[], true, "{}")),
            },
            Case {
                name: "AD disabled (514)",
                mapping: ad(),
                entry: entry(
                    "CN=Bob,DC=t",
                    &[("sAMAccountName", &[b"bob"]), ("userAccountControl", &[b"514"])],
                ),
                disabled_by_filter: false,
                want: Ok(("bob", None, &[], false, "{}")),
            },
            Case {
                name: "AD computer ignored",
                mapping: ad(),
                entry: entry(
                    "CN=WS1,CN=Computers,DC=t",
                    &[("sAMAccountName", &[b"WS1$"]), ("objectClass", &[b"user", b"Computer"])],
                ),
                disabled_by_filter: false,
                want: Err(Skip::Computer),
            },
            Case {
                name: "uac bit 2 ignored outside AD",
                mapping: ol(),
                entry: entry("uid=e,dc=x", &[("uid", &[b"e"]), ("userAccountControl", &[b"514"])]),
                disabled_by_filter: false,
                want: Ok(("e", None, &[], true, "{}")),
            },
        ];
        for c in cases {
            let got = map_user(&c.entry, "k".into(), &c.mapping, c.disabled_by_filter);
            match (got, c.want) {
                (Ok(u), Ok((name, display, emails, active, profile))) => {
                    assert_eq!(u.user_name, name, "{}", c.name);
                    assert_eq!(u.display_name.as_deref(), display, "{}", c.name);
                    assert_eq!(
                        u.emails,
                        emails.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                        "{}",
                        c.name
                    );
                    assert_eq!(u.active, active, "{}", c.name);
                    assert_eq!(u.profile, profile, "{}", c.name);
                    assert_eq!(u.kind, IdentityKind::Human, "{}", c.name);
                    assert_eq!(u.owner_key, None, "{}", c.name);
                    assert_eq!(u.key, "k");
                    let _: serde_json::Value = serde_json::from_str(&u.profile).unwrap();
                }
                (Err(g), Err(w)) => assert_eq!(g, w, "{}", c.name),
                (g, w) => panic!("{}: got {g:?}, want {w:?}", c.name),
            }
        }
    }

    #[test]
    fn ad_guid_is_little_endian_in_first_three_fields() {
        // objectGUID bytes as AD sends them for {01234567-89ab-cdef-0123-456789abcdef}.
        let wire =
            [0x67, 0x45, 0x23, 0x01, 0xab, 0x89, 0xef, 0xcd, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        let e = entry("CN=x,DC=t", &[("objectGUID", &[&wire])]);
        assert_eq!(
            entry_key(&e, &Mapping::active_directory()).unwrap(),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
        // The same bytes read in RFC order (the syncrepl control) differ.
        assert_eq!(uuid_text(&wire).unwrap(), "67452301-ab89-efcd-0123-456789abcdef");
        // A GUID that happens to be valid UTF-8 is still read as bytes.
        let ascii = *b"ABCDEFGHIJKLMNOP";
        let e = entry("CN=x,DC=t", &[("objectguid", &[&ascii])]);
        assert_eq!(
            entry_key(&e, &Mapping::active_directory()).unwrap(),
            "44434241-4645-4847-494a-4b4c4d4e4f50"
        );
        let short = entry("CN=x,DC=t", &[("objectGUID", &[&[1u8, 2, 3][..]])]);
        assert_eq!(entry_key(&short, &Mapping::active_directory()), Err(Skip::BadKey("objectGUID".into())));
    }

    #[test]
    fn entry_uuid_text_is_normalised() {
        let e = entry("uid=a,dc=x", &[("entryUUID", &[b"0A1B2C3D-0000-1000-8000-00AABBCCDDEE"])]);
        assert_eq!(entry_key(&e, &Mapping::openldap()).unwrap(), "0a1b2c3d-0000-1000-8000-00aabbccddee");
        let none = entry("uid=a,dc=x", &[]);
        assert_eq!(entry_key(&none, &Mapping::openldap()), Err(Skip::MissingKey("entryUUID".into())));
    }

    #[test]
    fn tombstones_and_uac() {
        assert!(is_tombstone(&entry("CN=x\\0ADEL:1,CN=Deleted Objects,DC=t", &[("isDeleted", &[b"TRUE"])])));
        assert!(!is_tombstone(&entry("CN=x,DC=t", &[])));
        for (uac, off) in [("512", false), ("514", true), ("66050", true), ("66048", false), ("junk", false)]
        {
            assert_eq!(
                ad_disabled(&entry("CN=x,DC=t", &[("userAccountControl", &[uac.as_bytes()])])),
                off,
                "{uac}"
            );
        }
    }

    #[test]
    fn dn_normalisation_and_suffix() {
        assert_eq!(
            normalize_dn("UID=Alice , OU=People,dc=Example, dc = com"),
            "uid=alice,ou=people,dc=example,dc=com"
        );
        assert_eq!(normalize_dn(r"cn=Smith\, John ,dc=x"), r"cn=smith\, john,dc=x");
        let base = normalize_dn("ou=people,dc=example,dc=com");
        assert!(dn_is_under(&normalize_dn("uid=a, ou=People,dc=example,dc=com"), &base));
        assert!(dn_is_under(&base, &base));
        assert!(!dn_is_under("uid=a,xou=people,dc=example,dc=com", &base));
        assert!(!dn_is_under("ou=groups,dc=example,dc=com", &base));
    }

    #[test]
    fn group_members_resolve_through_the_index() {
        let mut idx = DnIndex::default();
        idx.insert_user("k-alice", "uid=alice,ou=people,dc=example,dc=com");
        idx.insert_user("k-bob", "uid=bob,ou=people,dc=example,dc=com");
        let g = entry(
            "cn=eng,ou=groups,dc=example,dc=com",
            &[
                ("cn", &[b"eng"]),
                (
                    "member",
                    &[
                        b"UID=Alice, ou=People,dc=example,dc=com",
                        b"cn=other,ou=groups,dc=example,dc=com",
                        b"uid=zed,ou=x",
                    ],
                ),
            ],
        );
        let rec = map_group(&g, "k-eng".into(), &Mapping::openldap(), &idx).unwrap();
        assert_eq!(rec.display_name, "eng");
        assert_eq!(rec.member_keys, BTreeSet::from(["k-alice".to_owned()]));
        // A rename moves the index entry; a removal forgets it.
        idx.insert_user("k-alice", "uid=alice2,ou=people,dc=example,dc=com");
        assert_eq!(idx.user_key("uid=alice,ou=people,dc=example,dc=com"), None);
        assert_eq!(idx.user_key("uid=ALICE2,ou=people,dc=example,dc=com"), Some("k-alice"));
        idx.remove("k-bob");
        assert_eq!(idx.user_key("uid=bob,ou=people,dc=example,dc=com"), None);

        let ranged = entry("cn=big,dc=t", &[("cn", &[b"big"]), ("member;range=0-1499", &[b"cn=a,dc=t"])]);
        assert_eq!(
            map_group(&ranged, "k".into(), &Mapping::active_directory(), &idx),
            Err(Skip::RangedMembers("member".into()))
        );
    }

    #[test]
    fn account_expiry_is_read_in_filetime() {
        // 2026-12-01T00:00:00Z is 1_764_547_200 s after the Unix epoch.
        let now = lockstep_domain::Timestamp(1_764_547_200_000_000);
        assert_eq!(filetime(now), 134_090_208_000_000_000);
        let at = |v: &str| entry("cn=u,dc=t", &[("accountExpires", &[v.as_bytes()])]);
        for (value, expired) in [
            ("0", false),                   // never
            ("9223372036854775807", false), // never
            ("134090208000000000", true),   // this very moment
            ("134090207990000000", true),   // a second ago
            ("134090208010000000", false),  // a second from now
            ("not a number", false),
        ] {
            assert_eq!(ad_expired(&at(value), now), expired, "{value}");
        }
        assert!(!ad_expired(&entry("cn=u,dc=t", &[]), now), "absent: never");
    }

    #[test]
    fn profile_is_deterministic() {
        assert_eq!(render_profile(None, None), "{}");
        assert_eq!(render_profile(Some("A"), None), r#"{"name":{"givenName":"A"}}"#);
        assert_eq!(render_profile(Some("A"), Some("B")), r#"{"name":{"familyName":"B","givenName":"A"}}"#);
        // Same as serde_json's own (sorted) rendering.
        let v = serde_json::json!({"name": {"givenName": "A", "familyName": "B"}});
        assert_eq!(render_profile(Some("A"), Some("B")), v.to_string());
    }
}
