//! SCIM Agent documents ↔ directory identities of kind `agent`.
//!
//! Two IETF drafts define agents as SCIM resources at `/Agents` with the
//! schema `urn:ietf:params:scim:schemas:core:2.0:Agent`:
//! `draft-abbey-scim-agent-extension-00` (Okta) names the required handle
//! `name`, the later joint `draft-wzdk-scim-agent-resource-00` (Microsoft
//! and Okta) `agentUserName`. Lockstep speaks both: the two are aliases of
//! one server-unique handle (the identity's `userName`, compared like
//! one), either is accepted, both are returned, and a document giving both
//! must give the same value. An agent is a non-human identity, so the
//! bridge and the policy treat it like every other one; it may be created
//! without owners (clients create first and assign later) but gets no
//! sessions or credentials until it has an active one.

use lockstep_domain::{Identity, IdentityId, IdentityKind, Timestamp};
use lockstep_proto::format_rfc3339;
use serde_json::{Map, Value, json};

use crate::document::{Limits, ResourceSchema, validate_document};
use crate::error::{ScimProblem, ScimType};
use crate::schema::{AGENT_ATTRS, AGENT_SCHEMA};
use crate::user::etag;

/// The Agent resource type.
pub const AGENT: ResourceSchema = ResourceSchema {
    name: "Agent",
    endpoint: "/Agents",
    core_urn: AGENT_SCHEMA,
    core: AGENT_ATTRS,
    extensions: &[],
};

/// Attributes held in typed identity fields rather than in the profile.
const TYPED: &[&str] = &["agentUserName", "name", "externalId", "displayName", "active", "owners"];

fn bad(message: impl Into<String>) -> ScimProblem {
    ScimProblem::bad(ScimType::InvalidValue, message)
}

/// Validates an Agent document (a POST or PUT body, or a document after
/// PATCH) into an identity of kind `agent`. `current` keeps what the
/// document cannot change (a suspended agent told it is not active stays
/// suspended; the risk tier a directory source set).
pub fn agent_from_document(
    doc: &Value,
    id: IdentityId,
    current: Option<&Identity>,
    limits: &Limits,
) -> Result<Identity, ScimProblem> {
    let mut attrs = validate_document(&AGENT, &with_both_names(doc)?, limits)?;
    let mut text = |k: &str| match attrs.remove(k) {
        Some(Value::String(s)) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        _ => None,
    };
    let handle = match (text("agentUserName"), text("name")) {
        (Some(a), Some(n)) if a != n => {
            return Err(bad(format!(
                "agentUserName {a:?} and name {n:?} differ: they are two names of one handle (send either, or both the same)"
            )));
        }
        (Some(a), _) => a,
        (None, Some(n)) => n,
        (None, None) => return Err(bad("an Agent needs agentUserName (or its alias name), not empty")),
    };
    let external_id = text("externalId");
    let display_name = text("displayName");
    let active = attrs.remove("active").and_then(|v| v.as_bool());
    let status = crate::user::status_from(active, current);
    let mut owners = Vec::new();
    if let Some(Value::Array(items)) = attrs.remove("owners") {
        for item in items {
            let value = item
                .get("value")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("owners[] needs a value (a User id)"))?;
            let owner = value
                .parse::<IdentityId>()
                .map_err(|_| bad(format!("owners: {value:?} is not a User id")))?;
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
    }
    owners.sort();
    Ok(Identity {
        id,
        user_name: handle,
        emails: Vec::new(),
        external_id,
        source: lockstep_domain::SourceId::scim(),
        display_name,
        kind: IdentityKind::Agent,
        owners,
        risk_tier: current.and_then(|c| c.risk_tier),
        status,
        profile: Value::Object(attrs).to_string(),
        version: current.map_or(0, |c| c.version),
        created: current.map_or(Timestamp(0), |c| c.created),
        modified: current.map_or(Timestamp(0), |c| c.modified),
    })
}

/// The document with its handle as `agentUserName`: a `name`-only
/// document (the older draft) has it copied over; a document giving both
/// must give the same value. (`name` itself is read-only in the schema
/// table, so validation then ignores it.)
fn with_both_names(doc: &Value) -> Result<Value, ScimProblem> {
    let mut doc = doc.clone();
    if let Value::Object(obj) = &mut doc {
        let get = |obj: &Map<String, Value>, name: &str| {
            obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
        };
        match (get(obj, "agentUserName"), get(obj, "name")) {
            (Some(a), Some(n)) if a != n && !n.is_null() => {
                return Err(bad(format!(
                    "agentUserName {a} and name {n} differ: they are two names of one handle (send either, or both the same)"
                )));
            }
            (None, Some(n)) => {
                obj.insert("agentUserName".into(), n);
            }
            _ => {}
        }
    }
    Ok(doc)
}

/// A PATCH with `name` (the older draft's handle) addressed as
/// `agentUserName`.
fn renamed(request: &lockstep_proto::scim::PatchRequest) -> lockstep_proto::scim::PatchRequest {
    let mut request = request.clone();
    for op in &mut request.operations {
        if let Some(path) = &op.path {
            let prefix = format!("{AGENT_SCHEMA}:");
            let bare = if path.len() > prefix.len()
                && path.is_char_boundary(prefix.len())
                && path[..prefix.len()].eq_ignore_ascii_case(&prefix)
            {
                &path[prefix.len()..]
            } else {
                path.as_str()
            };
            if bare.eq_ignore_ascii_case("name") {
                op.path = Some("agentUserName".into());
            }
        }
        if op.path.is_none()
            && let Some(Value::Object(value)) = &mut op.value
            && !value.keys().any(|k| k.eq_ignore_ascii_case("agentUserName"))
            && let Some(key) = value.keys().find(|k| k.eq_ignore_ascii_case("name")).cloned()
            && let Some(handle) = value.remove(&key)
        {
            value.insert("agentUserName".into(), handle);
        }
    }
    request
}

/// Renders an agent. `base` is the SCIM base URL without a trailing slash.
pub fn agent_to_document(identity: &Identity, base: &str) -> Value {
    let profile: Map<String, Value> = match serde_json::from_str(&identity.profile) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut doc = Map::new();
    doc.insert("schemas".into(), json!([AGENT_SCHEMA]));
    doc.insert("id".into(), Value::String(identity.id.to_string()));
    crate::user::render_typed(&mut doc, identity, &["agentUserName", "name"], profile, TYPED);
    if !identity.owners.is_empty() {
        let owners: Vec<Value> = identity
            .owners
            .iter()
            .map(|o| json!({"value": o.to_string(), "$ref": format!("{base}/Users/{o}"), "type": "User"}))
            .collect();
        doc.insert("owners".into(), Value::Array(owners));
    }
    doc.insert(
        "meta".into(),
        json!({
            "resourceType": "Agent",
            "created": format_rfc3339(identity.created),
            "lastModified": format_rfc3339(identity.modified),
            "version": etag(identity.version),
            "location": format!("{base}/Agents/{}", identity.id),
        }),
    );
    Value::Object(doc)
}

/// Applies a PATCH to an agent and validates the result like a PUT body.
/// The handle's alias the client did not address follows the one it did,
/// so `replace name` renames the agent whatever `agentUserName` said.
pub fn patch_agent(
    current: &Identity,
    request: &lockstep_proto::scim::PatchRequest,
    limits: &Limits,
) -> Result<Identity, ScimProblem> {
    let Value::Object(mut doc) = agent_to_document(current, "") else {
        return Err(ScimProblem::bad(ScimType::InvalidSyntax, "stored agent is not an object"));
    };
    crate::patch::apply_patch(&AGENT, &mut doc, &renamed(request))?;
    // The rendered `name` is the old handle; the patched agentUserName rules.
    doc.remove("name");
    agent_from_document(&Value::Object(doc), current.id, Some(current), limits)
}

/// Whether an agent matches a SCIM filter, evaluated on its document.
pub fn agent_matches(filter: &crate::filter::Filter, identity: &Identity) -> bool {
    crate::eval::matches(filter, &agent_to_document(identity, ""))
}
