//! The SCIM filter parser: any input parses or is refused, never panics, and
//! a parsed filter plans into a listing or a SCIM error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(filter) = lockstep_scim::filter::parse(text) {
        let params = lockstep_scim::ListParams { filter: Some(text.to_owned()), ..Default::default() };
        let _ = lockstep_scim::list_query(&params);
        let _ = lockstep_scim::group_list_query(&params);
        let doc = serde_json::json!({"userName": "a", "emails": [{"value": "a@b", "type": "work"}], "active": true});
        let _ = lockstep_scim::eval::matches(&filter, &doc);
    }
});
