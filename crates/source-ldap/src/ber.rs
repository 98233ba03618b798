//! Total parsers for what the connector reads off the wire: search result
//! entries, the RFC 4533 controls and intermediate messages, and the
//! connector's own cursor encodings.
//!
//! ldap3's own helpers (`SearchEntry::construct`, `parse_syncinfo`, the
//! `ControlParser` impls) `panic!`/`expect` on malformed or unexpected BER,
//! and `SearchEntry` guesses text-vs-binary per value (a 16-byte
//! `objectGUID` can land among the strings). These parsers return errors
//! instead and keep every value as bytes, so a hostile or buggy server can
//! at worst fail one session, never the process.

use std::collections::BTreeMap;

use ldap3::asn1::{PL, StructureTag, TagClass, Types, parse_tag, parse_uint};

/// The RFC 4533 Sync State response control.
pub const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
/// The RFC 4533 Sync Done response control.
pub const SYNC_DONE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.3";
/// The RFC 4533 Sync Info intermediate response.
pub const SYNC_INFO_OID: &str = "1.3.6.1.4.1.4203.1.9.1.4";

/// BER from the server that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} from the LDAP server")]
pub struct ProtocolError {
    /// Which structure failed to parse.
    pub what: &'static str,
}

fn bad(what: &'static str) -> ProtocolError {
    ProtocolError { what }
}

/// A search result entry with every value kept as bytes. Attribute names
/// are lowercased (LDAP attribute descriptions are case-insensitive), so
/// lookups by a configured name never depend on the server's spelling.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawEntry {
    /// The entry's DN as the server sent it.
    pub dn: String,
    /// Lowercased attribute description → values.
    pub attrs: BTreeMap<String, Vec<Vec<u8>>>,
}

impl RawEntry {
    /// All values of an attribute (empty when absent).
    pub fn values(&self, name: &str) -> &[Vec<u8>] {
        self.attrs.get(&name.to_ascii_lowercase()).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The first value as text, if present and valid UTF-8.
    pub fn first_text(&self, name: &str) -> Option<String> {
        self.values(name).first().and_then(|v| String::from_utf8(v.clone()).ok())
    }

    /// Every value that is valid UTF-8, in server order.
    pub fn texts(&self, name: &str) -> Vec<String> {
        self.values(name).iter().filter_map(|v| String::from_utf8(v.clone()).ok()).collect()
    }

    /// Whether some value of `name` equals `want`, ignoring ASCII case
    /// (objectClass, isDeleted).
    pub fn has_value_ci(&self, name: &str, want: &str) -> bool {
        self.values(name).iter().any(|v| v.eq_ignore_ascii_case(want.as_bytes()))
    }
}

fn primitive(tag: StructureTag, what: &'static str) -> Result<Vec<u8>, ProtocolError> {
    match tag.payload {
        PL::P(v) => Ok(v),
        PL::C(_) => Err(bad(what)),
    }
}

fn constructed(tag: StructureTag, what: &'static str) -> Result<Vec<StructureTag>, ProtocolError> {
    match tag.payload {
        PL::C(v) => Ok(v),
        PL::P(_) => Err(bad(what)),
    }
}

fn is_universal(tag: &StructureTag, ty: Types) -> bool {
    tag.class == TagClass::Universal && tag.id == ty as u64
}

/// Parses one BER element (a whole LDAP message or a control value) into
/// its tag tree, for callers and fuzzers that start from raw bytes.
pub fn parse_ber(bytes: &[u8]) -> Result<StructureTag, ProtocolError> {
    parse_all(bytes, "BER element")
}

fn parse_all(bytes: &[u8], what: &'static str) -> Result<StructureTag, ProtocolError> {
    match parse_tag(bytes) {
        Ok((_, tag)) => Ok(tag),
        Err(_) => Err(bad(what)),
    }
}

fn boolean(bytes: &[u8], what: &'static str) -> Result<bool, ProtocolError> {
    match bytes {
        [b] => Ok(*b != 0),
        _ => Err(bad(what)),
    }
}

/// Parses a SearchResultEntry (`[APPLICATION 4] SEQUENCE { objectName,
/// attributes SEQUENCE OF SEQUENCE { type, vals SET OF value } }`).
pub fn parse_entry(tag: &StructureTag) -> Result<RawEntry, ProtocolError> {
    const WHAT: &str = "search result entry";
    if tag.class != TagClass::Application || tag.id != 4 {
        return Err(bad(WHAT));
    }
    let mut parts = constructed(tag.clone(), WHAT)?.into_iter();
    let dn = parts.next().ok_or(bad(WHAT)).and_then(|t| primitive(t, WHAT))?;
    let dn = String::from_utf8(dn).map_err(|_| bad("entry DN"))?;
    let mut attrs: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    if let Some(list) = parts.next() {
        for attr in constructed(list, WHAT)? {
            let mut a = constructed(attr, WHAT)?.into_iter();
            let name = a.next().ok_or(bad(WHAT)).and_then(|t| primitive(t, WHAT))?;
            let name = String::from_utf8(name).map_err(|_| bad("attribute name"))?.to_ascii_lowercase();
            let vals = match a.next() {
                Some(set) => constructed(set, WHAT)?
                    .into_iter()
                    .map(|v| primitive(v, WHAT))
                    .collect::<Result<Vec<_>, _>>()?,
                None => Vec::new(),
            };
            attrs.entry(name).or_default().extend(vals);
        }
    }
    Ok(RawEntry { dn, attrs })
}

/// `syncState` of an entry (RFC 4533 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Unchanged since the cookie (refresh present phase).
    Present,
    /// New, or (slapd) changed.
    Add,
    /// Changed.
    Modify,
    /// Deleted: the entry carries a DN but no attributes.
    Delete,
}

/// The Sync State control's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncStateValue {
    /// What happened to the entry.
    pub state: EntryState,
    /// The entry's `entryUUID` as 16 raw bytes.
    pub uuid: Vec<u8>,
    /// A cookie to commit once the entry is applied.
    pub cookie: Option<Vec<u8>>,
}

/// Parses the Sync State control value.
pub fn parse_sync_state(val: &[u8]) -> Result<SyncStateValue, ProtocolError> {
    const WHAT: &str = "syncState control";
    let mut parts = constructed(parse_all(val, WHAT)?, WHAT)?.into_iter();
    let state_tag = parts.next().ok_or(bad(WHAT))?;
    if !is_universal(&state_tag, Types::Enumerated) {
        return Err(bad(WHAT));
    }
    let state_bytes = primitive(state_tag, WHAT)?;
    let state = match parse_uint(&state_bytes) {
        Ok((_, 0)) => EntryState::Present,
        Ok((_, 1)) => EntryState::Add,
        Ok((_, 2)) => EntryState::Modify,
        Ok((_, 3)) => EntryState::Delete,
        _ => return Err(bad(WHAT)),
    };
    let uuid = parts.next().ok_or(bad(WHAT)).and_then(|t| primitive(t, WHAT))?;
    let cookie = parts.next().map(|t| primitive(t, WHAT)).transpose()?;
    Ok(SyncStateValue { state, uuid, cookie })
}

/// The Sync Done control's value (on the final SearchResultDone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncDoneValue {
    /// The cookie after the refresh.
    pub cookie: Option<Vec<u8>>,
    /// `true`: the refresh used explicit deletes; `false`: a present phase.
    pub refresh_deletes: bool,
}

/// Parses the Sync Done control value.
pub fn parse_sync_done(val: &[u8]) -> Result<SyncDoneValue, ProtocolError> {
    const WHAT: &str = "syncDone control";
    let mut out = SyncDoneValue::default();
    for t in constructed(parse_all(val, WHAT)?, WHAT)? {
        if is_universal(&t, Types::OctetString) {
            out.cookie = Some(primitive(t, WHAT)?);
        } else if is_universal(&t, Types::Boolean) {
            out.refresh_deletes = boolean(&primitive(t, WHAT)?, WHAT)?;
        } else {
            return Err(bad(WHAT));
        }
    }
    Ok(out)
}

/// The Sync Info intermediate message (RFC 4533 §2.5), with the RFC's
/// defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncInfo {
    /// A checkpoint.
    NewCookie(Vec<u8>),
    /// The end of a delete phase.
    RefreshDelete {
        /// Cookie after the phase.
        cookie: Option<Vec<u8>>,
        /// Whether the refresh stage is over (default `true`).
        refresh_done: bool,
    },
    /// The end of a present phase: everything not reported present (or
    /// added) is gone.
    RefreshPresent {
        /// Cookie after the phase.
        cookie: Option<Vec<u8>>,
        /// Whether the refresh stage is over (default `true`).
        refresh_done: bool,
    },
    /// A set of UUIDs that are present or (with `refresh_deletes`) deleted.
    SyncIdSet {
        /// Cookie after the set.
        cookie: Option<Vec<u8>>,
        /// `true`: the UUIDs were deleted (default `false`).
        refresh_deletes: bool,
        /// 16-byte entryUUIDs.
        uuids: Vec<Vec<u8>>,
    },
}

/// Parses an IntermediateResponse (`[APPLICATION 25] SEQUENCE { [0] oid,
/// [1] value }`) carrying a Sync Info value. Other intermediates are an
/// error (the caller only asked for syncrepl).
pub fn parse_sync_info(tag: &StructureTag) -> Result<SyncInfo, ProtocolError> {
    const WHAT: &str = "syncInfo message";
    if tag.class != TagClass::Application || tag.id != 25 {
        return Err(bad(WHAT));
    }
    let mut oid = None;
    let mut value = None;
    for t in constructed(tag.clone(), WHAT)? {
        match (t.class, t.id) {
            (TagClass::Context, 0) => oid = Some(primitive(t, WHAT)?),
            (TagClass::Context, 1) => value = Some(primitive(t, WHAT)?),
            _ => return Err(bad(WHAT)),
        }
    }
    if oid.as_deref() != Some(SYNC_INFO_OID.as_bytes()) {
        return Err(bad("intermediate response (not syncInfo)"));
    }
    let value = value.ok_or(bad(WHAT))?;
    let inner = parse_all(&value, WHAT)?;
    if inner.class != TagClass::Context {
        return Err(bad(WHAT));
    }
    match inner.id {
        0 => Ok(SyncInfo::NewCookie(primitive(inner, WHAT)?)),
        id @ (1 | 2) => {
            let mut cookie = None;
            let mut refresh_done = true;
            for t in constructed(inner, WHAT)? {
                if is_universal(&t, Types::OctetString) && cookie.is_none() {
                    cookie = Some(primitive(t, WHAT)?);
                } else if is_universal(&t, Types::Boolean) {
                    refresh_done = boolean(&primitive(t, WHAT)?, WHAT)?;
                } else {
                    return Err(bad(WHAT));
                }
            }
            Ok(if id == 1 {
                SyncInfo::RefreshDelete { cookie, refresh_done }
            } else {
                SyncInfo::RefreshPresent { cookie, refresh_done }
            })
        }
        3 => {
            let mut cookie = None;
            let mut refresh_deletes = false;
            let mut uuids = Vec::new();
            for t in constructed(inner, WHAT)? {
                if is_universal(&t, Types::OctetString) && cookie.is_none() {
                    cookie = Some(primitive(t, WHAT)?);
                } else if is_universal(&t, Types::Boolean) {
                    refresh_deletes = boolean(&primitive(t, WHAT)?, WHAT)?;
                } else if is_universal(&t, Types::Set) {
                    for u in constructed(t, WHAT)? {
                        uuids.push(primitive(u, WHAT)?);
                    }
                } else {
                    return Err(bad(WHAT));
                }
            }
            Ok(SyncInfo::SyncIdSet { cookie, refresh_deletes, uuids })
        }
        _ => Err(bad(WHAT)),
    }
}

/// Prefix of a syncrepl cursor: one cookie per search (users, then groups).
const SYNC_CURSOR_MAGIC: &[u8] = b"LSS1";
/// Prefix of an AD `uSNChanged` cursor.
const USN_CURSOR_MAGIC: &[u8] = b"LSU1";

/// Encodes the cookies of the connector's syncrepl searches into one
/// cursor: each search has its own cookie, and the engine stores one blob.
pub fn encode_sync_cursor(cookies: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = SYNC_CURSOR_MAGIC.to_vec();
    out.push(u8::try_from(cookies.len()).unwrap_or(u8::MAX));
    for c in cookies.iter().take(usize::from(u8::MAX)) {
        match c {
            None => out.push(0),
            Some(c) => {
                out.push(1);
                out.extend_from_slice(&u32::try_from(c.len()).unwrap_or(u32::MAX).to_be_bytes());
                out.extend_from_slice(c);
            }
        }
    }
    out
}

/// Decodes [`encode_sync_cursor`]'s output; `None` for anything else (a
/// cursor from another mode, a damaged one: the caller starts over).
pub fn decode_sync_cursor(bytes: &[u8]) -> Option<Vec<Option<Vec<u8>>>> {
    let rest = bytes.strip_prefix(SYNC_CURSOR_MAGIC)?;
    let (&n, mut rest) = rest.split_first()?;
    let mut out = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let (&flag, r) = rest.split_first()?;
        rest = r;
        match flag {
            0 => out.push(None),
            1 => {
                let (len, r) = rest.split_first_chunk::<4>()?;
                let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
                if r.len() < len {
                    return None;
                }
                let (c, r) = r.split_at(len);
                out.push(Some(c.to_vec()));
                rest = r;
            }
            _ => return None,
        }
    }
    rest.is_empty().then_some(out)
}

/// Where an AD `uSNChanged` poll stands: USNs are per domain controller,
/// so the DC's identity travels with the high-water mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsnCursor {
    /// The rootDSE `dsServiceName` of the DC the USN belongs to.
    pub server: String,
    /// `highestCommittedUSN` read before the last applied search.
    pub usn: u64,
}

/// Encodes a [`UsnCursor`].
pub fn encode_usn_cursor(c: &UsnCursor) -> Vec<u8> {
    let mut out = USN_CURSOR_MAGIC.to_vec();
    out.extend_from_slice(&c.usn.to_be_bytes());
    out.extend_from_slice(c.server.as_bytes());
    out
}

/// Decodes [`encode_usn_cursor`]'s output; `None` for anything else.
pub fn decode_usn_cursor(bytes: &[u8]) -> Option<UsnCursor> {
    let rest = bytes.strip_prefix(USN_CURSOR_MAGIC)?;
    let (usn, rest) = rest.split_first_chunk::<8>()?;
    let server = String::from_utf8(rest.to_vec()).ok()?;
    Some(UsnCursor { server, usn: u64::from_be_bytes(*usn) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal BER writer for test vectors (definite lengths).
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes = (n as u32).to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (4 - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }
    fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }
    fn ostr(b: &[u8]) -> Vec<u8> {
        tlv(0x04, b)
    }
    fn enumerated(v: u8) -> Vec<u8> {
        tlv(0x0a, &[v])
    }
    fn boolean_tag(v: bool) -> Vec<u8> {
        tlv(0x01, &[if v { 0xff } else { 0 }])
    }

    #[test]
    fn sync_state_round_trip() {
        let uuid = [7u8; 16];
        let val = seq(&[enumerated(1), ostr(&uuid), ostr(b"ck")]);
        let s = parse_sync_state(&val).unwrap();
        assert_eq!(
            s,
            SyncStateValue { state: EntryState::Add, uuid: uuid.to_vec(), cookie: Some(b"ck".to_vec()) }
        );
        let val = seq(&[enumerated(3), ostr(&uuid)]);
        assert_eq!(parse_sync_state(&val).unwrap().state, EntryState::Delete);
    }

    #[test]
    fn sync_state_rejects_unknown_state_and_garbage() {
        assert!(parse_sync_state(&seq(&[enumerated(9), ostr(&[0; 16])])).is_err());
        assert!(parse_sync_state(&seq(&[ostr(&[0; 16])])).is_err());
        assert!(parse_sync_state(&[]).is_err());
        assert!(parse_sync_state(&[0x30, 0x03, 0x04]).is_err());
        assert!(parse_sync_state(&[0x04, 0x00]).is_err());
    }

    #[test]
    fn sync_done_defaults_and_flags() {
        assert_eq!(
            parse_sync_done(&seq(&[])).unwrap(),
            SyncDoneValue { cookie: None, refresh_deletes: false }
        );
        assert_eq!(
            parse_sync_done(&seq(&[ostr(b"c"), boolean_tag(true)])).unwrap(),
            SyncDoneValue { cookie: Some(b"c".to_vec()), refresh_deletes: true }
        );
        assert!(parse_sync_done(&seq(&[enumerated(1)])).is_err());
    }

    fn intermediate(value: Vec<u8>) -> StructureTag {
        StructureTag {
            class: TagClass::Application,
            id: 25,
            payload: PL::C(vec![
                StructureTag {
                    class: TagClass::Context,
                    id: 0,
                    payload: PL::P(SYNC_INFO_OID.as_bytes().to_vec()),
                },
                StructureTag { class: TagClass::Context, id: 1, payload: PL::P(value) },
            ]),
        }
    }

    #[test]
    fn sync_info_variants() {
        let nc = intermediate(tlv(0x80, b"abc"));
        assert_eq!(parse_sync_info(&nc).unwrap(), SyncInfo::NewCookie(b"abc".to_vec()));

        let rp = intermediate(tlv(0xa2, &ostr(b"k")));
        assert_eq!(
            parse_sync_info(&rp).unwrap(),
            SyncInfo::RefreshPresent { cookie: Some(b"k".to_vec()), refresh_done: true }
        );

        let rd = intermediate(tlv(0xa1, &boolean_tag(false)));
        assert_eq!(
            parse_sync_info(&rd).unwrap(),
            SyncInfo::RefreshDelete { cookie: None, refresh_done: false }
        );

        let set = tlv(0x31, &[ostr(&[1; 16]), ostr(&[2; 16])].concat());
        let ids = intermediate(tlv(0xa3, &[ostr(b"z"), boolean_tag(true), set].concat()));
        assert_eq!(
            parse_sync_info(&ids).unwrap(),
            SyncInfo::SyncIdSet {
                cookie: Some(b"z".to_vec()),
                refresh_deletes: true,
                uuids: vec![vec![1; 16], vec![2; 16]]
            }
        );
        let ids_default = intermediate(tlv(0xa3, &tlv(0x31, &ostr(&[3; 16]))));
        assert_eq!(
            parse_sync_info(&ids_default).unwrap(),
            SyncInfo::SyncIdSet { cookie: None, refresh_deletes: false, uuids: vec![vec![3; 16]] }
        );
        assert!(parse_sync_info(&intermediate(tlv(0xa4, &[]))).is_err());
    }

    #[test]
    fn sync_info_rejects_other_intermediates() {
        let mut t = intermediate(tlv(0x80, b"x"));
        if let PL::C(ref mut parts) = t.payload {
            parts[0].payload = PL::P(b"1.2.3".to_vec());
        }
        assert!(parse_sync_info(&t).is_err());
        let plain = StructureTag { class: TagClass::Application, id: 25, payload: PL::P(vec![]) };
        assert!(parse_sync_info(&plain).is_err());
    }

    #[test]
    fn entry_keeps_binary_values_and_lowercases_names() {
        let guid = vec![0xffu8, 0x00, 0x80, 0x41];
        let attr = seq(&[ostr(b"objectGUID"), tlv(0x31, &ostr(&guid))]);
        let bytes = tlv(0x64, &[ostr(b"uid=a,dc=x"), seq(&[attr])].concat());
        let (_, tag) = parse_tag(&bytes).unwrap();
        let e = parse_entry(&tag).unwrap();
        assert_eq!(e.dn, "uid=a,dc=x");
        assert_eq!(e.values("OBJECTGUID"), &[guid]);
        let wrong = StructureTag { class: TagClass::Application, id: 19, payload: PL::C(vec![]) };
        assert!(parse_entry(&wrong).is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_foreign_bytes() {
        let c = vec![Some(b"rid=000,csn=1".to_vec()), None];
        assert_eq!(decode_sync_cursor(&encode_sync_cursor(&c)), Some(c));
        let u = UsnCursor { server: "CN=NTDS Settings,CN=DC1".into(), usn: 4242 };
        assert_eq!(decode_usn_cursor(&encode_usn_cursor(&u)), Some(u.clone()));
        assert_eq!(decode_sync_cursor(&encode_usn_cursor(&u)), None);
        assert_eq!(decode_usn_cursor(&encode_sync_cursor(&[None])), None);
        assert_eq!(decode_sync_cursor(b"LSS1\x01\x01\x00\x00\x00\x09ab"), None);
        assert_eq!(decode_sync_cursor(b"rid=000,csn=1"), None);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = parse_sync_state(&bytes);
            let _ = parse_sync_done(&bytes);
            let _ = decode_sync_cursor(&bytes);
            let _ = decode_usn_cursor(&bytes);
            if let Ok((_, tag)) = parse_tag(&bytes) {
                let _ = parse_entry(&tag);
                let _ = parse_sync_info(&tag);
            }
            let _ = parse_sync_info(&intermediate(bytes.clone()));
        }
    }
}
