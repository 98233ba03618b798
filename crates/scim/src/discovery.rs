//! `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas` (RFC 7644 §4),
//! rendered from the same tables that validate documents.

use serde_json::{Value, json};

use crate::document::{RESOURCE_TYPES, ResourceSchema};
use crate::query::MAX_COUNT;
use crate::schema::{
    AGENT_ATTRS, AGENT_SCHEMA, AGENTIC_APPLICATION_ATTRS, AGENTIC_APPLICATION_SCHEMA, ENTERPRISE_ATTRS,
    ENTERPRISE_SCHEMA, GROUP_ATTRS, GROUP_SCHEMA, LOCKSTEP_ATTRS, LOCKSTEP_SCHEMA, USER_ATTRS, USER_SCHEMA,
    schema_document,
};

/// The service provider configuration. `max_payload` is the body limit;
/// `agent_extension` adds the agent drafts' `agentExtension` flag (`/Agents`
/// is served either way).
pub fn service_provider_config(base: &str, max_payload: usize, agent_extension: bool) -> Value {
    let mut doc = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/lockstep/lockstep#readme",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": max_payload},
        "filter": {"supported": true, "maxResults": MAX_COUNT},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [
            {"type": "oauthbearertoken", "name": "Bearer token",
             "description": "A Lockstep client secret (or the admin token) as a bearer token", "primary": true},
            {"type": "httpbasic", "name": "HTTP Basic",
             "description": "client_id:client_secret of a Lockstep API client with the scim scope"}
        ],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")}
    });
    if agent_extension && let Some(obj) = doc.as_object_mut() {
        obj.insert("agentExtension".into(), json!({"supported": true}));
    }
    doc
}

fn resource_type(rt: &ResourceSchema, base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": rt.name,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": format!("{} resources", rt.name),
        "schema": rt.core_urn,
        "schemaExtensions": rt.extensions.iter().map(|(urn, _)| json!({"schema": urn, "required": false})).collect::<Vec<_>>(),
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", rt.name)}
    })
}

/// Every resource type.
pub fn resource_types(base: &str) -> Vec<Value> {
    RESOURCE_TYPES.iter().map(|rt| resource_type(rt, base)).collect()
}

/// One resource type by id.
pub fn resource_type_by_id(base: &str, id: &str) -> Option<Value> {
    RESOURCE_TYPES.iter().find(|rt| rt.name == id).map(|rt| resource_type(rt, base))
}

/// Every schema.
pub fn schemas(base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (id, name, description, attrs) in [
        (USER_SCHEMA, "User", "User Account", USER_ATTRS),
        (ENTERPRISE_SCHEMA, "EnterpriseUser", "Enterprise User", ENTERPRISE_ATTRS),
        (LOCKSTEP_SCHEMA, "LockstepIdentity", "Non-human identities: kind, owner, risk tier", LOCKSTEP_ATTRS),
        (GROUP_SCHEMA, "Group", "Group", GROUP_ATTRS),
        (
            AGENT_SCHEMA,
            "Agent",
            "AI agent (draft-abbey-scim-agent-extension, draft-wzdk-scim-agent-resource)",
            AGENT_ATTRS,
        ),
        (
            AGENTIC_APPLICATION_SCHEMA,
            "AgenticApplication",
            "An application AI agents run in (draft-abbey-scim-agent-extension)",
            AGENTIC_APPLICATION_ATTRS,
        ),
    ] {
        if RESOURCE_TYPES.iter().any(|rt| rt.core_urn == id || rt.extensions.iter().any(|(u, _)| *u == id)) {
            out.push(schema_document(id, name, description, attrs, base));
        }
    }
    out
}

/// One schema by URN.
pub fn schema_by_id(base: &str, id: &str) -> Option<Value> {
    schemas(base).into_iter().find(|s| s["id"] == id)
}
