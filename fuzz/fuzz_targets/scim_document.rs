//! Document validation: any JSON body for a User or a Group is accepted into
//! an identity or group, or refused with a SCIM error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_domain::{GroupId, IdentityId};

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let limits = lockstep_scim::Limits::default();
    let id = IdentityId::from_uuid(uuid::Uuid::from_u128(1));
    if let Ok(user) = lockstep_scim::user_from_document(&doc, id, None, &limits) {
        let rendered = lockstep_scim::user_to_document(&user, &[], "");
        assert!(lockstep_scim::user_from_document(&rendered, id, Some(&user), &limits).is_ok(), "{rendered}");
    }
    let _ = lockstep_scim::group_from_document(&doc, GroupId::from_uuid(uuid::Uuid::from_u128(2)), None, &limits);
});
