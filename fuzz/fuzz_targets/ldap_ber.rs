//! The LDAP connector's own BER parsers (entries, syncrepl controls and
//! intermediates, cursors): any server bytes parse or are refused, never
//! panic (ldap3's own helpers panic on malformed input; these replace them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_source_ldap as ldap;

fuzz_target!(|data: &[u8]| {
    let _ = ldap::parse_sync_state(data);
    let _ = ldap::parse_sync_done(data);
    let _ = ldap::decode_sync_cursor(data);
    let _ = ldap::decode_usn_cursor(data);
    if let Ok(tag) = ldap::parse_ber(data) {
        if let Ok(entry) = ldap::parse_entry(&tag) {
            let mapping = ldap::Mapping::active_directory();
            let _ = ldap::entry_key(&entry, &mapping);
            let _ = ldap::map_user(&entry, "k".into(), &mapping, false);
            let _ = ldap::normalize_dn(&entry.dn);
        }
        let _ = ldap::parse_sync_info(&tag);
    }
});
