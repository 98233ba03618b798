//! Document validation: any JSON body for a User, a Group, an Agent or an
//! AgenticApplication is accepted into an identity or group, or refused
//! with a SCIM error; what is accepted renders into a document that is
//! accepted again.
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
    for resource in [&lockstep_scim::AGENTS, &lockstep_scim::AGENTIC_APPLICATIONS] {
        if let Ok(agent) = resource.from_document(&doc, id, None, &limits) {
            let rendered = resource.to_document(&agent, "");
            assert!(resource.from_document(&rendered, id, Some(&agent), &limits).is_ok(), "{rendered}");
        }
    }
    let _ = lockstep_scim::group_from_document(&doc, GroupId::from_uuid(uuid::Uuid::from_u128(2)), None, &limits);
});
