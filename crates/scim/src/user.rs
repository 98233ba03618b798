//! SCIM User documents ↔ directory identities.

use lockstep_domain::{GroupId, Identity, IdentityId, IdentityKind, IdentityStatus, RiskTier, Timestamp};
use lockstep_proto::format_rfc3339;
use serde_json::{Map, Value, json};

use crate::document::{Limits, USER, validate_document};
use crate::error::{ScimProblem, ScimType};
use crate::schema::{ENTERPRISE_SCHEMA, LOCKSTEP_SCHEMA, USER_SCHEMA};

/// Attributes held in typed identity fields rather than in the profile.
const TYPED: &[&str] = &["userName", "externalId", "displayName", "active"];

/// Validates a User document (the body of a POST or PUT, or a document after
/// PATCH) into an identity.
///
/// Read-only attributes (`id`, `meta`, `groups`) are ignored as RFC 7644
/// §3.5.1 requires, `password` is accepted and discarded (Lockstep does not
/// authenticate with passwords), unknown attributes are refused.
/// `current` supplies what the document cannot change: kind, and whether a
/// non-active identity is suspended rather than disabled.
pub fn user_from_document(
    doc: &Value,
    id: IdentityId,
    current: Option<&Identity>,
    limits: &Limits,
) -> Result<Identity, ScimProblem> {
    let mut attrs = validate_document(&USER, doc, limits)?;
    let text = |attrs: &mut Map<String, Value>, k: &str| match attrs.remove(k) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let user_name =
        text(&mut attrs, "userName").map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).ok_or_else(
            || ScimProblem::bad(ScimType::InvalidValue, "userName is required and must not be empty"),
        )?;
    let (kind, owners, risk_tier) = nhi(&mut attrs, current)?;
    let external_id = text(&mut attrs, "externalId");
    let display_name = text(&mut attrs, "displayName");
    let active = attrs.remove("active").and_then(|v| v.as_bool());
    let status = status_from(active, current);
    // Addresses stay in the profile (with type and primary) and are also
    // lifted out for the directory's e-mail index.
    let emails = match attrs.get("emails") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|e| e.get("value").and_then(Value::as_str))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    Ok(Identity {
        id,
        user_name,
        emails,
        external_id,
        source: lockstep_domain::SourceId::scim(),
        display_name,
        kind,
        owners,
        risk_tier,
        status,
        profile: Value::Object(attrs).to_string(),
        version: current.map_or(0, |c| c.version),
        created: current.map_or(Timestamp(0), |c| c.created),
        modified: current.map_or(Timestamp(0), |c| c.modified),
    })
}

/// The status a document's `active` gives, `current` being the identity
/// before: a suspended identity stays suspended when told it is not
/// active; without `active`, the status stays (a new identity is active).
pub(crate) fn status_from(active: Option<bool>, current: Option<&Identity>) -> IdentityStatus {
    match (active, current.map(|c| c.status)) {
        (Some(true), _) => IdentityStatus::Active,
        (Some(false), Some(IdentityStatus::Suspended)) => IdentityStatus::Suspended,
        (Some(false), _) => IdentityStatus::Disabled,
        (None, Some(status)) => status,
        (None, None) => IdentityStatus::Active,
    }
}

/// Renders the typed fields every identity resource shares — `externalId`,
/// the handle under each of `handles`, `displayName`, `active` — then the
/// profile's other attributes (those not in `typed`).
pub(crate) fn render_typed(
    doc: &mut Map<String, Value>,
    identity: &Identity,
    handles: &[&str],
    profile: Map<String, Value>,
    typed: &[&str],
) {
    if let Some(e) = &identity.external_id {
        doc.insert("externalId".into(), Value::String(e.clone()));
    }
    for handle in handles {
        doc.insert((*handle).into(), Value::String(identity.user_name.clone()));
    }
    if let Some(d) = &identity.display_name {
        doc.insert("displayName".into(), Value::String(d.clone()));
    }
    doc.insert("active".into(), Value::Bool(identity.status == IdentityStatus::Active));
    for (k, v) in profile {
        if !typed.contains(&k.as_str()) {
            doc.insert(k, v);
        }
    }
}

/// Reads the Lockstep extension: identity kind, owner and risk tier, all
/// typed fields of the identity. The extension's content is authoritative
/// when present (an absent owner clears it); when the document has no
/// extension at all, kind, owner and tier stay as they were, so an identity
/// provider that knows nothing of the extension (Okta's full-profile PUT)
/// cannot turn a service account into a person.
fn nhi(
    attrs: &mut Map<String, Value>,
    current: Option<&Identity>,
) -> Result<(IdentityKind, Vec<IdentityId>, Option<RiskTier>), ScimProblem> {
    let Some(Value::Object(mut ext)) = attrs.remove(LOCKSTEP_SCHEMA) else {
        return Ok(current
            .map_or((IdentityKind::Human, Vec::new(), None), |c| (c.kind, c.owners.clone(), c.risk_tier)));
    };
    let kind = match ext.remove("identityKind") {
        Some(Value::String(k)) => k.parse::<IdentityKind>().map_err(|_| {
            ScimProblem::bad(
                ScimType::InvalidValue,
                format!(
                    "{LOCKSTEP_SCHEMA}:identityKind: unknown kind {k:?} (one of {})",
                    IdentityKind::NAMES.join(", ")
                ),
            )
        })?,
        _ => current.map_or(IdentityKind::Human, |c| c.kind),
    };
    // Agents and agentic applications are resource types of their own,
    // whose schemas have their attributes.
    let endpoint = match kind {
        IdentityKind::Agent => Some("/Agents"),
        IdentityKind::AgenticApplication => Some("/AgenticApplications"),
        _ => None,
    };
    if let Some(endpoint) = endpoint {
        return Err(ScimProblem::bad(
            ScimType::InvalidValue,
            format!(
                "{LOCKSTEP_SCHEMA}:identityKind: {kind} is written at {endpoint}, as that SCIM resource type"
            ),
        ));
    }
    let owners = match ext.remove("owner") {
        Some(owner) => {
            let value = owner.get("value").and_then(Value::as_str).ok_or_else(|| {
                ScimProblem::bad(
                    ScimType::InvalidValue,
                    format!("{LOCKSTEP_SCHEMA}:owner needs a value (a User id)"),
                )
            })?;
            vec![value.parse::<IdentityId>().map_err(|_| {
                ScimProblem::bad(
                    ScimType::InvalidValue,
                    format!("{LOCKSTEP_SCHEMA}:owner: {value:?} is not a User id"),
                )
            })?]
        }
        None => Vec::new(),
    };
    let risk_tier = match ext.remove("riskTier") {
        Some(Value::String(tier)) => Some(tier.parse::<RiskTier>().map_err(|_| {
            ScimProblem::bad(
                ScimType::InvalidValue,
                format!(
                    "{LOCKSTEP_SCHEMA}:riskTier: unknown tier {tier:?} (one of {})",
                    RiskTier::NAMES.join(", ")
                ),
            )
        })?),
        _ => None,
    };
    Ok((kind, owners, risk_tier))
}

/// Renders an identity as a SCIM User, with the groups it belongs to
/// (id, displayName). `base` is the SCIM base URL (for `meta.location`),
/// without a trailing slash.
pub fn user_to_document(identity: &Identity, groups: &[(GroupId, String)], base: &str) -> Value {
    let mut doc = Map::new();
    let profile: Map<String, Value> = match serde_json::from_str(&identity.profile) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut profile = profile;
    profile.remove(LOCKSTEP_SCHEMA);
    if identity.kind != IdentityKind::Human || !identity.owners.is_empty() || identity.risk_tier.is_some() {
        let mut ext = Map::new();
        ext.insert("identityKind".into(), Value::String(identity.kind.as_str().to_owned()));
        // The User extension has one owner; several come from agents' `owners`.
        if let Some(owner) = identity.owners.first() {
            ext.insert(
                "owner".into(),
                json!({"value": owner.to_string(), "$ref": format!("{base}/Users/{owner}")}),
            );
        }
        if let Some(tier) = identity.risk_tier {
            ext.insert("riskTier".into(), Value::String(tier.as_str().to_owned()));
        }
        profile.insert(LOCKSTEP_SCHEMA.to_owned(), Value::Object(ext));
    }
    let mut schemas = vec![Value::String(USER_SCHEMA.to_owned())];
    for urn in [ENTERPRISE_SCHEMA, LOCKSTEP_SCHEMA] {
        if profile.contains_key(urn) {
            schemas.push(Value::String(urn.to_owned()));
        }
    }
    doc.insert("schemas".into(), Value::Array(schemas));
    doc.insert("id".into(), Value::String(identity.id.to_string()));
    render_typed(&mut doc, identity, &["userName"], profile, TYPED);
    // A directory source (LDAP, an HR file) sets the typed addresses but
    // writes no SCIM profile for them: render them, the first as primary.
    if !doc.contains_key("emails") && !identity.emails.is_empty() {
        let emails: Vec<Value> = identity
            .emails
            .iter()
            .enumerate()
            .map(|(i, e)| json!({"value": e, "type": "work", "primary": i == 0}))
            .collect();
        doc.insert("emails".into(), Value::Array(emails));
    }
    if !groups.is_empty() {
        let groups: Vec<Value> = groups
            .iter()
            .map(|(id, name)| json!({"value": id.to_string(), "$ref": format!("{base}/Groups/{id}"), "display": name, "type": "direct"}))
            .collect();
        doc.insert("groups".into(), Value::Array(groups));
    }
    doc.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": format_rfc3339(identity.created),
            "lastModified": format_rfc3339(identity.modified),
            "version": etag(identity.version),
            "location": format!("{base}/Users/{}", identity.id),
        }),
    );
    Value::Object(doc)
}

/// Whether a User matches a SCIM filter, evaluated on its document. The
/// Lockstep extension's `identityKind` is filled in for plain humans (whose
/// rendering omits the extension) so that the evaluator and the directory
/// index agree that every User has a kind.
pub fn user_matches(
    filter: &crate::filter::Filter,
    identity: &Identity,
    groups: &[(GroupId, String)],
) -> bool {
    let mut doc = user_to_document(identity, groups, "");
    if let Some(obj) = doc.as_object_mut() {
        let ext = obj.entry(LOCKSTEP_SCHEMA).or_insert_with(|| json!({}));
        if let Some(ext) = ext.as_object_mut() {
            ext.entry("identityKind").or_insert_with(|| Value::String(identity.kind.as_str().to_owned()));
        }
    }
    crate::eval::matches(filter, &doc)
}

/// The weak ETag of a version.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// Applies a PATCH to a user and validates the result like a PUT body.
///
/// Removing the Lockstep extension explicitly (it was there, the patched
/// document has none) makes the identity a plain human again; merely not
/// sending it (a PUT from a client that does not know it) changes nothing.
pub fn patch_user(
    current: &Identity,
    request: &lockstep_proto::scim::PatchRequest,
    limits: &Limits,
) -> Result<Identity, ScimProblem> {
    if let Some(active) = sets_only_active(request) {
        let mut next = current.clone();
        next.status = status_from(Some(active), Some(current));
        return Ok(next);
    }
    patch_document(current, request, limits)
}

/// The value of a PATCH that only sets `active` to a boolean — the
/// deprovisioning request Okta and Entra ID send — if it is one (a valid
/// request: its schema, one to `MAX_OPERATIONS` operations, each an `add`
/// or `replace` of the path `active`). [`patch_user`] applies it to the
/// identity directly, giving the status the document round trip gives
/// (`status_from`) without rendering and re-validating the whole user:
/// the change runs on the directory's single writer, where that round trip
/// was 11 % of its samples under PATCH, and deprovisioning then cannot be
/// refused over an attribute it does not touch.
fn sets_only_active(request: &lockstep_proto::scim::PatchRequest) -> Option<bool> {
    let schema = lockstep_proto::scim::PATCH_SCHEMA;
    if !request.schemas.iter().any(|s| s.eq_ignore_ascii_case(schema))
        || request.operations.len() > crate::patch::MAX_OPERATIONS
    {
        return None;
    }
    let mut active = None;
    for operation in &request.operations {
        let sets = ["add", "replace"].iter().any(|op| operation.op.eq_ignore_ascii_case(op));
        match (&operation.path, &operation.value) {
            (Some(path), Some(Value::Bool(value))) if sets && path.eq_ignore_ascii_case("active") => {
                active = Some(*value);
            }
            _ => return None,
        }
    }
    active
}

/// A PATCH applied to the user's document, and the document read back.
fn patch_document(
    current: &Identity,
    request: &lockstep_proto::scim::PatchRequest,
    limits: &Limits,
) -> Result<Identity, ScimProblem> {
    let Value::Object(mut doc) = user_to_document(current, &[], "") else {
        return Err(ScimProblem::bad(ScimType::InvalidSyntax, "stored user is not an object"));
    };
    let had_extension = doc.contains_key(LOCKSTEP_SCHEMA);
    crate::patch::apply_patch(&crate::document::USER, &mut doc, request)?;
    if had_extension && !doc.contains_key(LOCKSTEP_SCHEMA) {
        doc.insert(LOCKSTEP_SCHEMA.to_owned(), json!({"identityKind": "human"}));
    }
    user_from_document(&Value::Object(doc), current.id, Some(current), limits)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use lockstep_proto::scim::{PATCH_SCHEMA, PatchOperation, PatchRequest};

    use super::*;

    fn patch(operations: &[(&str, &str, Value)]) -> PatchRequest {
        PatchRequest {
            schemas: vec![PATCH_SCHEMA.to_owned()],
            operations: operations
                .iter()
                .map(|(op, path, value)| PatchOperation {
                    op: (*op).to_owned(),
                    path: Some((*path).to_owned()),
                    value: Some(value.clone()),
                })
                .collect(),
        }
    }

    /// A PATCH that only sets `active` gives, applied directly, exactly the
    /// identity the document round trip gives, from every status and with
    /// every spelling clients send; anything else takes the round trip.
    #[test]
    fn setting_only_active_matches_the_document_round_trip() {
        let doc = json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
            "userName": "Ann.Lee@example.com",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "emails": [{"value": "ann@example.com", "type": "work", "primary": true}],
            "title": "Engineer",
            ENTERPRISE_SCHEMA: {"department": "R&D", "manager": {"value": "m-1"}},
        });
        let limits = Limits::default();
        let id = IdentityId::from_uuid(uuid::Uuid::from_u128(7));
        let created = user_from_document(&doc, id, None, &limits).unwrap();
        let requests = [
            patch(&[("replace", "active", json!(false))]),
            patch(&[("Replace", "ACTIVE", json!(true))]),
            patch(&[("add", "active", json!(false)), ("replace", "active", json!(true))]),
        ];
        for status in [IdentityStatus::Active, IdentityStatus::Disabled, IdentityStatus::Suspended] {
            let current = Identity { status, version: 3, ..created.clone() };
            for request in &requests {
                assert!(sets_only_active(request).is_some());
                let direct = patch_user(&current, request, &limits).unwrap();
                let round_trip = patch_document(&current, request, &limits).unwrap();
                assert_eq!(direct, round_trip, "{status:?} {request:?}");
            }
        }
        let others = [
            patch(&[("replace", "active", json!("False"))]),
            patch(&[("remove", "active", json!(false))]),
            patch(&[("replace", "active", json!(false)), ("replace", "title", json!("CTO"))]),
            patch(&[("replace", "urn:ietf:params:scim:schemas:core:2.0:User:active", json!(false))]),
            PatchRequest { schemas: vec![PATCH_SCHEMA.to_owned()], operations: Vec::new() },
            PatchRequest {
                schemas: vec![USER_SCHEMA.to_owned()],
                ..patch(&[("replace", "active", json!(false))])
            },
        ];
        for request in &others {
            assert_eq!(sets_only_active(request), None, "{request:?}");
        }
        // Still refused as before: no operations, or not a PatchOp.
        assert!(patch_user(&created, &others[4], &limits).is_err());
        assert!(patch_user(&created, &others[5], &limits).is_err());
    }
}
