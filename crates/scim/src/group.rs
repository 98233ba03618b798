//! SCIM Group documents ↔ directory groups.

use lockstep_domain::{Group, GroupId, IdentityId, Timestamp};
use lockstep_proto::format_rfc3339;
use serde_json::{Map, Value, json};

use crate::document::{GROUP, Limits, validate_document};
use crate::error::{ScimProblem, ScimType};
use crate::schema::GROUP_SCHEMA;
use crate::user::etag;

fn invalid(message: String) -> ScimProblem {
    ScimProblem::bad(ScimType::InvalidValue, message)
}

/// Validates a Group document into a group. Members must be Users, named by
/// their `id` in `value` (`$ref` is derived and ignored; nested groups are
/// not supported). Whether each member exists is checked when the write is
/// committed.
pub fn group_from_document(
    doc: &Value,
    id: GroupId,
    current: Option<&Group>,
    limits: &Limits,
) -> Result<Group, ScimProblem> {
    let mut attrs = validate_document(&GROUP, doc, limits)?;
    let display_name = match attrs.remove("displayName") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => return Err(invalid("displayName is required and must not be empty".into())),
    };
    let external_id = match attrs.remove("externalId") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let mut members = Vec::new();
    if let Some(Value::Array(items)) = attrs.remove("members") {
        for item in items {
            if let Some(kind) = item.get("type").and_then(Value::as_str)
                && !kind.eq_ignore_ascii_case("User")
            {
                return Err(invalid(format!("members: type {kind:?} is not supported (only User)")));
            }
            let value = item
                .get("value")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("members: every member needs a value (the User's id)".into()))?;
            let member = value
                .parse::<IdentityId>()
                .map_err(|_| invalid(format!("members: {value:?} is not a User id")))?;
            members.push(member);
        }
    }
    members.sort();
    members.dedup();
    Ok(Group {
        id,
        display_name,
        external_id,
        source: lockstep_domain::SourceId::scim(),
        members,
        version: current.map_or(0, |c| c.version),
        created: current.map_or(Timestamp(0), |c| c.created),
        modified: current.map_or(Timestamp(0), |c| c.modified),
    })
}

/// Renders a group as a SCIM Group. `base` is the SCIM base URL.
pub fn group_to_document(group: &Group, base: &str) -> Value {
    group_to_document_named(group, base, &|_| None)
}

/// [`group_to_document`], with each member's `display` (its `userName`)
/// from `name`.
pub fn group_to_document_named(
    group: &Group,
    base: &str,
    name: &dyn Fn(lockstep_domain::IdentityId) -> Option<String>,
) -> Value {
    let mut doc = Map::new();
    doc.insert("schemas".into(), json!([GROUP_SCHEMA]));
    doc.insert("id".into(), Value::String(group.id.to_string()));
    doc.insert("displayName".into(), Value::String(group.display_name.clone()));
    if let Some(e) = &group.external_id {
        doc.insert("externalId".into(), Value::String(e.clone()));
    }
    if !group.members.is_empty() {
        let members: Vec<Value> = group
            .members
            .iter()
            .map(|m| {
                let mut member =
                    json!({"value": m.to_string(), "$ref": format!("{base}/Users/{m}"), "type": "User"});
                if let (Some(display), Value::Object(o)) = (name(*m), &mut member) {
                    o.insert("display".into(), Value::String(display));
                }
                member
            })
            .collect();
        doc.insert("members".into(), Value::Array(members));
    }
    doc.insert(
        "meta".into(),
        json!({
            "resourceType": "Group",
            "created": format_rfc3339(group.created),
            "lastModified": format_rfc3339(group.modified),
            "version": etag(group.version),
            "location": format!("{base}/Groups/{}", group.id),
        }),
    );
    Value::Object(doc)
}
