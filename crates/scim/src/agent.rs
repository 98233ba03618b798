//! SCIM Agent and AgenticApplication documents ↔ directory identities of
//! kind `agent` and `agentic_application`.
//!
//! Two IETF drafts define agents as SCIM resources at `/Agents` with the
//! schema `urn:ietf:params:scim:schemas:core:2.0:Agent`:
//! `draft-abbey-scim-agent-extension-00` (Okta) names the required handle
//! `name`, the later joint `draft-wzdk-scim-agent-resource-00` (Microsoft
//! and Okta) `agentUserName`. Lockstep speaks both: the two are aliases of
//! one server-unique handle (the identity's `userName`, compared like
//! one), either is accepted, both are returned, and a document giving both
//! must give the same value. The first draft also defines
//! `AgenticApplication` (`/AgenticApplications`, handle `name`): the
//! application agents run in. Both are non-human identities, so the bridge
//! and the policy treat them like every other one; they may be created
//! without owners (clients create first and assign later) but get no
//! sessions or credentials until they have an active one.

use lockstep_domain::{Identity, IdentityId, IdentityKind, Timestamp};
use lockstep_proto::format_rfc3339;
use serde_json::{Map, Value, json};

use crate::document::{Limits, ResourceSchema, validate_document};
use crate::error::{ScimProblem, ScimType};
use crate::schema::{AGENT_ATTRS, AGENT_SCHEMA, AGENTIC_APPLICATION_ATTRS, AGENTIC_APPLICATION_SCHEMA};
use crate::user::etag;

/// The Agent resource type.
pub const AGENT: ResourceSchema = ResourceSchema {
    name: "Agent",
    endpoint: "/Agents",
    core_urn: AGENT_SCHEMA,
    core: AGENT_ATTRS,
    extensions: &[],
};

/// The AgenticApplication resource type.
pub const AGENTIC_APPLICATION: ResourceSchema = ResourceSchema {
    name: "AgenticApplication",
    endpoint: "/AgenticApplications",
    core_urn: AGENTIC_APPLICATION_SCHEMA,
    core: AGENTIC_APPLICATION_ATTRS,
    extensions: &[],
};

/// A resource type of non-human identities of one kind, each named by a
/// handle (the identity's `userName`), owned by Users.
#[derive(Debug)]
pub struct NonHumanResource {
    /// The schema table.
    pub schema: &'static ResourceSchema,
    /// The identity kind it serves.
    pub kind: IdentityKind,
    /// The handle's attribute.
    pub handle: &'static str,
    /// Another name of the handle, read-only in the table but accepted in
    /// its place (`name` of the older agent draft).
    pub alias: Option<&'static str>,
}

/// `/Agents`.
pub const AGENTS: NonHumanResource = NonHumanResource {
    schema: &AGENT,
    kind: IdentityKind::Agent,
    handle: "agentUserName",
    alias: Some("name"),
};

/// `/AgenticApplications`.
pub const AGENTIC_APPLICATIONS: NonHumanResource = NonHumanResource {
    schema: &AGENTIC_APPLICATION,
    kind: IdentityKind::AgenticApplication,
    handle: "name",
    alias: None,
};

/// Attributes held in typed identity fields rather than in the profile.
const TYPED: &[&str] = &["agentUserName", "name", "externalId", "displayName", "active", "owners"];

fn bad(message: impl Into<String>) -> ScimProblem {
    ScimProblem::bad(ScimType::InvalidValue, message)
}

fn key<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a String> {
    obj.keys().find(|k| k.eq_ignore_ascii_case(name))
}

impl NonHumanResource {
    /// Validates a document (a POST or PUT body, or a document after PATCH)
    /// into an identity of this kind. `current` keeps what the document
    /// cannot change (a suspended identity told it is not active stays
    /// suspended; the risk tier a directory source set).
    pub fn from_document(
        &self,
        doc: &Value,
        id: IdentityId,
        current: Option<&Identity>,
        limits: &Limits,
    ) -> Result<Identity, ScimProblem> {
        let mut attrs = validate_document(self.schema, &self.with_handle(doc)?, limits)?;
        let mut text = |k: &str| match attrs.remove(k) {
            Some(Value::String(s)) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
            _ => None,
        };
        let handle = text(self.handle).ok_or_else(|| {
            bad(match self.alias {
                Some(alias) => {
                    format!("an {} needs {} (or its alias {alias}), not empty", self.schema.name, self.handle)
                }
                None => format!("an {} needs {}, not empty", self.schema.name, self.handle),
            })
        })?;
        let external_id = text("externalId");
        let display_name = text("displayName");
        let active = attrs.remove("active").and_then(|v| v.as_bool());
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
            kind: self.kind,
            owners,
            risk_tier: current.and_then(|c| c.risk_tier),
            status: crate::user::status_from(active, current),
            profile: Value::Object(attrs).to_string(),
            version: current.map_or(0, |c| c.version),
            created: current.map_or(Timestamp(0), |c| c.created),
            modified: current.map_or(Timestamp(0), |c| c.modified),
        })
    }

    /// The document with its handle under the handle's own name: an
    /// alias-only document (the older agent draft) has it copied over; a
    /// document giving both must give the same value. (The alias is
    /// read-only in the schema table, so validation then ignores it.)
    fn with_handle(&self, doc: &Value) -> Result<Value, ScimProblem> {
        let mut doc = doc.clone();
        let (Some(alias), Value::Object(obj)) = (self.alias, &mut doc) else { return Ok(doc) };
        let handle = key(obj, self.handle).and_then(|k| obj.get(k)).cloned();
        let aliased = key(obj, alias).and_then(|k| obj.get(k)).cloned();
        match (handle, aliased) {
            (Some(h), Some(a)) if h != a && !a.is_null() => Err(bad(format!(
                "{} {h} and {alias} {a} differ: they are two names of one handle (send either, or both the same)",
                self.handle
            ))),
            (None, Some(a)) => {
                obj.insert(self.handle.into(), a);
                Ok(doc)
            }
            _ => Ok(doc),
        }
    }

    /// A PATCH with the alias addressed as the handle.
    fn renamed(&self, request: &lockstep_proto::scim::PatchRequest) -> lockstep_proto::scim::PatchRequest {
        let mut request = request.clone();
        let Some(alias) = self.alias else { return request };
        let prefix = format!("{}:", self.schema.core_urn);
        for op in &mut request.operations {
            if let Some(path) = &op.path {
                let bare = match path.get(..prefix.len()) {
                    Some(head) if head.eq_ignore_ascii_case(&prefix) => &path[prefix.len()..],
                    _ => path.as_str(),
                };
                if bare.eq_ignore_ascii_case(alias) {
                    op.path = Some(self.handle.into());
                }
            }
            if op.path.is_none()
                && let Some(Value::Object(value)) = &mut op.value
                && key(value, self.handle).is_none()
                && let Some(k) = key(value, alias).cloned()
                && let Some(handle) = value.remove(&k)
            {
                value.insert(self.handle.into(), handle);
            }
        }
        request
    }

    /// Renders an identity of this kind. `base` is the SCIM base URL
    /// without a trailing slash.
    pub fn to_document(&self, identity: &Identity, base: &str) -> Value {
        let profile: Map<String, Value> = match serde_json::from_str(&identity.profile) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let mut doc = Map::new();
        doc.insert("schemas".into(), json!([self.schema.core_urn]));
        doc.insert("id".into(), Value::String(identity.id.to_string()));
        let handles: Vec<&str> = std::iter::once(self.handle).chain(self.alias).collect();
        crate::user::render_typed(&mut doc, identity, &handles, profile, TYPED);
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
                "resourceType": self.schema.name,
                "created": format_rfc3339(identity.created),
                "lastModified": format_rfc3339(identity.modified),
                "version": etag(identity.version),
                "location": format!("{base}{}/{}", self.schema.endpoint, identity.id),
            }),
        );
        Value::Object(doc)
    }

    /// Applies a PATCH and validates the result like a PUT body. The alias
    /// the client did not address follows the handle, so `replace name`
    /// renames an agent whatever `agentUserName` said.
    pub fn patch(
        &self,
        current: &Identity,
        request: &lockstep_proto::scim::PatchRequest,
        limits: &Limits,
    ) -> Result<Identity, ScimProblem> {
        let Value::Object(mut doc) = self.to_document(current, "") else {
            return Err(ScimProblem::bad(ScimType::InvalidSyntax, "stored resource is not an object"));
        };
        crate::patch::apply_patch(self.schema, &mut doc, &self.renamed(request))?;
        // The rendered alias is the old handle; the patched handle rules.
        if let Some(alias) = self.alias {
            doc.remove(alias);
        }
        self.from_document(&Value::Object(doc), current.id, Some(current), limits)
    }

    /// Whether an identity matches a SCIM filter, evaluated on its document.
    pub fn matches(&self, filter: &crate::filter::Filter, identity: &Identity) -> bool {
        crate::eval::matches(filter, &self.to_document(identity, ""))
    }
}
