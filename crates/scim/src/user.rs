//! SCIM User documents ↔ directory identities.

use lockstep_domain::{Identity, IdentityId, IdentityKind, IdentityStatus, Timestamp};
use lockstep_proto::format_rfc3339;
use lockstep_proto::scim::USER_SCHEMA;
use serde_json::{Map, Value, json};

use crate::error::{ScimProblem, ScimType};
use crate::schema::{ENTERPRISE_SCHEMA, Shape, lookup, name_sub};

/// Longest accepted `userName`, in characters.
const MAX_USER_NAME: usize = 256;

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
) -> Result<Identity, ScimProblem> {
    let Value::Object(doc) = doc else {
        return Err(ScimProblem::bad(ScimType::InvalidSyntax, "a User must be a JSON object"));
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut profile = Map::new();
    let mut user_name = None;
    let mut external_id = None;
    let mut display_name = None;
    let mut active = None;
    for (key, value) in doc {
        let (canonical, shape) = lookup(key).ok_or_else(|| {
            ScimProblem::bad(
                ScimType::InvalidSyntax,
                format!("unknown attribute {key:?} for resource type User"),
            )
        })?;
        if seen.contains(&canonical) {
            return Err(ScimProblem::bad(
                ScimType::InvalidSyntax,
                format!("attribute {canonical:?} appears more than once"),
            ));
        }
        seen.push(canonical);
        if value.is_null() {
            continue;
        }
        let value = check_shape(canonical, shape, value)?;
        match (canonical, value) {
            (_, None) => {}
            ("userName", Some(v)) => user_name = v.as_str().map(str::to_owned),
            ("externalId", Some(v)) => external_id = v.as_str().map(str::to_owned),
            ("displayName", Some(v)) => display_name = v.as_str().map(str::to_owned),
            ("active", Some(v)) => active = v.as_bool(),
            (name, Some(v)) => {
                profile.insert(name.to_owned(), v);
            }
        }
    }
    let user_name = user_name.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).ok_or_else(|| {
        ScimProblem::bad(ScimType::InvalidValue, "userName is required and must not be empty")
    })?;
    if user_name.chars().count() > MAX_USER_NAME {
        return Err(ScimProblem::bad(
            ScimType::InvalidValue,
            format!("userName is longer than {MAX_USER_NAME} characters"),
        ));
    }
    let current_status = current.map(|c| c.status);
    let status = match (active, current_status) {
        (Some(true), _) => IdentityStatus::Active,
        // A suspended identity stays suspended when told it is not active.
        (Some(false), Some(IdentityStatus::Suspended)) => IdentityStatus::Suspended,
        (Some(false), _) => IdentityStatus::Disabled,
        (None, Some(status)) => status,
        (None, None) => IdentityStatus::Active,
    };
    Ok(Identity {
        id,
        user_name,
        external_id,
        display_name,
        kind: current.map_or(IdentityKind::Human, |c| c.kind),
        status,
        profile: Value::Object(profile).to_string(),
        version: current.map_or(0, |c| c.version),
        created: current.map_or(Timestamp(0), |c| c.created),
        modified: current.map_or(Timestamp(0), |c| c.modified),
    })
}

/// Checks a value against its attribute's shape; returns the value to keep
/// (with sub-attribute names canonicalised), or `None` to drop it.
fn check_shape(name: &str, shape: Shape, value: &Value) -> Result<Option<Value>, ScimProblem> {
    let wrong = |expected: &str| {
        ScimProblem::bad(ScimType::InvalidValue, format!("attribute {name:?} must be {expected}"))
    };
    match shape {
        Shape::ReadOnly | Shape::WriteOnly => Ok(None),
        Shape::String => match value {
            Value::String(_) => Ok(Some(value.clone())),
            _ => Err(wrong("a string")),
        },
        Shape::Boolean => match value {
            Value::Bool(_) => Ok(Some(value.clone())),
            // Entra ID sends booleans as "True"/"False" strings in PATCH
            // (documented deviation, accepted for compatibility).
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
            _ => Err(wrong("a boolean")),
        },
        Shape::Complex(subs) => {
            let Value::Object(obj) = value else {
                return Err(wrong("an object"));
            };
            if name == ENTERPRISE_SCHEMA {
                return Ok(Some(value.clone()));
            }
            let mut out = Map::new();
            for (k, v) in obj {
                let sub = if subs.is_empty() { None } else { name_sub(k) };
                let sub = sub.ok_or_else(|| {
                    ScimProblem::bad(ScimType::InvalidSyntax, format!("unknown sub-attribute {name}.{k}"))
                })?;
                match v {
                    Value::Null => {}
                    Value::String(_) => {
                        out.insert(sub.to_owned(), v.clone());
                    }
                    _ => return Err(wrong("an object of strings")),
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        Shape::MultiComplex => match value {
            Value::Array(items) if items.iter().all(Value::is_object) => {
                Ok((!items.is_empty()).then(|| value.clone()))
            }
            _ => Err(wrong("an array of objects")),
        },
    }
}

/// Renders an identity as a SCIM User. `base` is the SCIM base URL (for
/// `meta.location`), without a trailing slash.
pub fn user_to_document(identity: &Identity, base: &str) -> Value {
    let mut doc = Map::new();
    let profile: Map<String, Value> = match serde_json::from_str(&identity.profile) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut schemas = vec![Value::String(USER_SCHEMA.to_owned())];
    if profile.contains_key(ENTERPRISE_SCHEMA) {
        schemas.push(Value::String(ENTERPRISE_SCHEMA.to_owned()));
    }
    doc.insert("schemas".into(), Value::Array(schemas));
    doc.insert("id".into(), Value::String(identity.id.to_string()));
    if let Some(e) = &identity.external_id {
        doc.insert("externalId".into(), Value::String(e.clone()));
    }
    doc.insert("userName".into(), Value::String(identity.user_name.clone()));
    if let Some(d) = &identity.display_name {
        doc.insert("displayName".into(), Value::String(d.clone()));
    }
    doc.insert("active".into(), Value::Bool(identity.status == IdentityStatus::Active));
    for (k, v) in profile {
        if !TYPED.contains(&k.as_str()) {
            doc.insert(k, v);
        }
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

/// The weak ETag of a version.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}
