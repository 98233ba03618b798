//! The PATCH engine: any PatchOp body applied to a realistic User either
//! yields a valid identity or a SCIM error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_domain::IdentityId;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<lockstep_proto::scim::PatchRequest>(data) else { return };
    let limits = lockstep_scim::Limits::default();
    let doc = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ada@example.com",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
        "active": true
    });
    let id = IdentityId::from_uuid(uuid::Uuid::from_u128(1));
    let Ok(user) = lockstep_scim::user_from_document(&doc, id, None, &limits) else { return };
    if let Ok(patched) = lockstep_scim::patch_user(&user, &request, &limits) {
        // What a PATCH produced renders and validates again.
        let rendered = lockstep_scim::user_to_document(&patched, &[], "");
        let _ = lockstep_scim::user_from_document(&rendered, id, Some(&patched), &limits);
    }
});
