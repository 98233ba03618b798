//! Schema-driven validation and projection of resource documents.

use serde_json::{Map, Value};

use crate::error::{ScimProblem, ScimType};
use crate::schema::{
    Attr, ENTERPRISE_ATTRS, ENTERPRISE_SCHEMA, GROUP_ATTRS, GROUP_SCHEMA, LOCKSTEP_ATTRS, LOCKSTEP_SCHEMA,
    Mutability, Type, USER_ATTRS, USER_SCHEMA, find, is_common_read_only,
};

/// A resource type's schemas.
#[derive(Debug, Clone, Copy)]
pub struct ResourceSchema {
    /// `User`, `Group`.
    pub name: &'static str,
    /// Endpoint, e.g. `/Users`.
    pub endpoint: &'static str,
    /// Core schema URN.
    pub core_urn: &'static str,
    /// Core attributes.
    pub core: &'static [Attr],
    /// Extension schemas: (URN, attributes).
    pub extensions: &'static [(&'static str, &'static [Attr])],
}

/// The User resource type.
pub const USER: ResourceSchema = ResourceSchema {
    name: "User",
    endpoint: "/Users",
    core_urn: USER_SCHEMA,
    core: USER_ATTRS,
    extensions: &[(ENTERPRISE_SCHEMA, ENTERPRISE_ATTRS), (LOCKSTEP_SCHEMA, LOCKSTEP_ATTRS)],
};

/// The Group resource type.
pub const GROUP: ResourceSchema = ResourceSchema {
    name: "Group",
    endpoint: "/Groups",
    core_urn: GROUP_SCHEMA,
    core: GROUP_ATTRS,
    extensions: &[],
};

/// The resource types served (and advertised): never advertise what does
/// not work.
pub const RESOURCE_TYPES: &[ResourceSchema] =
    &[USER, GROUP, crate::agent::AGENT, crate::agent::AGENTIC_APPLICATION];

impl ResourceSchema {
    /// The extension with this URN, case-insensitively.
    pub fn extension(&self, urn: &str) -> Option<(&'static str, &'static [Attr])> {
        self.extensions.iter().find(|(u, _)| u.eq_ignore_ascii_case(urn)).copied()
    }
}

/// Size limits below the request body limit, so that one request cannot
/// store a megabyte in a `displayName` or ten thousand e-mail addresses.
/// Every limit is configurable (`[scim]` in the config file) and refused
/// with `invalidValue` naming the attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest identifier (`userName`, `externalId`, a group's
    /// `displayName`), in characters.
    pub max_identifier: usize,
    /// Longest other string, in characters.
    pub max_string: usize,
    /// Longest binary value (base64 text, e.g. an X.509 certificate).
    pub max_binary: usize,
    /// Most values of one multi-valued attribute (`emails`, `roles`, …).
    pub max_values: usize,
    /// Most members of one group.
    pub max_members: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_identifier: 256,
            max_string: 1024,
            max_binary: 16 * 1024,
            max_values: 100,
            max_members: 100_000,
        }
    }
}

fn invalid_value(path: &str, expected: &str) -> ScimProblem {
    ScimProblem::bad(ScimType::InvalidValue, format!("attribute {path:?} must be {expected}"))
}

/// Validates one attribute value; returns what to store (`None`: nothing).
/// Refuses a string attribute value that is too long or holds characters
/// the attribute may not hold (see [`lockstep_domain::text`]).
fn check_text(attr: &Attr, text: &str, path: &str, limits: &Limits) -> Result<(), ScimProblem> {
    use lockstep_domain::text::{TextProblem, check_identifier, check_single_line, is_control};
    let result = if attr.identifier {
        check_identifier(text, limits.max_identifier)
    } else if matches!(attr.ty, Type::Binary) {
        check_single_line(text, limits.max_binary)
    } else if attr.multiline {
        match text.chars().find(|c| is_control(*c) && !matches!(c, '\n' | '\r' | '\t')) {
            Some(c) => Err(TextProblem::Control(c)),
            None if text.chars().count() > limits.max_string => {
                Err(TextProblem::TooLong { max: limits.max_string })
            }
            None => Ok(()),
        }
    } else {
        check_single_line(text, limits.max_string)
    };
    result
        .map_err(|problem| ScimProblem::bad(ScimType::InvalidValue, format!("attribute {path:?} {problem}")))
}

pub(crate) fn check_value(
    attr: &Attr,
    value: &Value,
    path: &str,
    limits: &Limits,
) -> Result<Option<Value>, ScimProblem> {
    match attr.mutability {
        Mutability::ReadOnly | Mutability::WriteOnly => return Ok(None),
        Mutability::ReadWrite => {}
    }
    if value.is_null() {
        return Ok(None);
    }
    if attr.multi {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            _ => return Err(invalid_value(path, "an array")),
        };
        let max = if attr.name == "members" { limits.max_members } else { limits.max_values };
        if items.len() > max {
            return Err(ScimProblem::bad(
                ScimType::InvalidValue,
                format!("attribute {path:?} has {} values; at most {max} are accepted", items.len()),
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = check_single(attr, item, path, limits)? {
                out.push(v);
            }
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    check_single(attr, value, path, limits)
}

fn check_single(
    attr: &Attr,
    value: &Value,
    path: &str,
    limits: &Limits,
) -> Result<Option<Value>, ScimProblem> {
    match attr.ty {
        Type::String | Type::Reference(_) | Type::Binary => match value {
            Value::String(text) => {
                check_text(attr, text, path, limits)?;
                Ok(Some(value.clone()))
            }
            _ => Err(invalid_value(path, "a string")),
        },
        Type::DateTime => match value {
            Value::String(s) if lockstep_proto::parse_rfc3339(s).is_some() => Ok(Some(value.clone())),
            _ => Err(invalid_value(path, "an RFC 3339 date-time")),
        },
        // Entra ID sends booleans as "True"/"False" strings (documented deviation).
        Type::Boolean => match value {
            Value::Bool(_) => Ok(Some(value.clone())),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
            _ => Err(invalid_value(path, "a boolean")),
        },
        Type::Complex => {
            let Value::Object(obj) = value else { return Err(invalid_value(path, "an object")) };
            let mut out = Map::new();
            for (k, v) in obj {
                let sub = find(attr.sub, k).ok_or_else(|| {
                    ScimProblem::bad(ScimType::InvalidSyntax, format!("unknown sub-attribute {path}.{k}"))
                })?;
                if let Some(v) = check_value(sub, v, &format!("{path}.{}", sub.name), limits)? {
                    out.insert(sub.name.to_owned(), v);
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
    }
}

/// Validates a whole document against a resource schema. Returns the
/// writable attributes under their canonical names (extensions as nested
/// objects keyed by URN); read-only attributes are ignored and write-only
/// ones dropped.
pub fn validate_document(
    schema: &ResourceSchema,
    doc: &Value,
    limits: &Limits,
) -> Result<Map<String, Value>, ScimProblem> {
    let Value::Object(doc) = doc else {
        return Err(ScimProblem::bad(
            ScimType::InvalidSyntax,
            format!("a {} must be a JSON object", schema.name),
        ));
    };
    let mut out = Map::new();
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in doc {
        if is_common_read_only(key) || (schema.name == "User" && key.eq_ignore_ascii_case("groups")) {
            continue;
        }
        let canonical = if let Some((urn, attrs)) = schema.extension(key) {
            if !value.is_null() {
                let Value::Object(ext) = value else { return Err(invalid_value(urn, "an object")) };
                let mut stored = Map::new();
                for (k, v) in ext {
                    if is_common_read_only(k) {
                        continue;
                    }
                    let attr = find(attrs, k).ok_or_else(|| {
                        ScimProblem::bad(ScimType::InvalidSyntax, format!("unknown attribute {urn}:{k}"))
                    })?;
                    if let Some(v) = check_value(attr, v, &format!("{urn}:{}", attr.name), limits)? {
                        stored.insert(attr.name.to_owned(), v);
                    }
                }
                if !stored.is_empty() {
                    out.insert(urn.to_owned(), Value::Object(stored));
                }
            }
            urn
        } else {
            let attr = find(schema.core, key).ok_or_else(|| {
                ScimProblem::bad(
                    ScimType::InvalidSyntax,
                    format!("unknown attribute {key:?} for resource type {}", schema.name),
                )
            })?;
            if let Some(v) = check_value(attr, value, attr.name, limits)? {
                out.insert(attr.name.to_owned(), v);
            }
            attr.name
        };
        if seen.contains(&canonical) {
            return Err(ScimProblem::bad(
                ScimType::InvalidSyntax,
                format!("attribute {canonical:?} appears more than once"),
            ));
        }
        seen.push(canonical);
    }
    // `active` is advertised as required but may be omitted (see schema.rs).
    for attr in schema.core.iter().filter(|a| a.required && a.name != "active") {
        if !out.contains_key(attr.name) {
            return Err(ScimProblem::bad(ScimType::InvalidValue, format!("{} is required", attr.name)));
        }
    }
    Ok(out)
}

/// One entry of `attributes` / `excludedAttributes`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    /// Top-level key (an attribute name, or an extension URN).
    top: String,
    /// Attribute within an extension, or sub-attribute.
    rest: Option<String>,
}

fn selector(schema: &ResourceSchema, raw: &str) -> Option<Selector> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    for (urn, _) in schema.extensions {
        if raw.eq_ignore_ascii_case(urn) {
            return Some(Selector { top: (*urn).to_owned(), rest: None });
        }
        if raw.len() > urn.len() + 1
            && raw[..urn.len()].eq_ignore_ascii_case(urn)
            && raw.as_bytes()[urn.len()] == b':'
        {
            return Some(Selector { top: (*urn).to_owned(), rest: Some(raw[urn.len() + 1..].to_owned()) });
        }
    }
    let local = if raw.len() > schema.core_urn.len() + 1
        && raw[..schema.core_urn.len()].eq_ignore_ascii_case(schema.core_urn)
    {
        &raw[schema.core_urn.len() + 1..]
    } else {
        raw
    };
    let (top, rest) = match local.split_once('.') {
        Some((t, r)) => (t, Some(r.to_owned())),
        None => (local, None),
    };
    Some(Selector { top: top.to_owned(), rest })
}

fn key_of<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a String> {
    obj.keys().find(|k| k.eq_ignore_ascii_case(name))
}

/// Applies `attributes` / `excludedAttributes` (RFC 7644 §3.9) to a rendered
/// document. `id` and `schemas` are always returned.
pub fn project(
    schema: &ResourceSchema,
    doc: Value,
    attributes: Option<&str>,
    excluded: Option<&str>,
) -> Value {
    let Value::Object(mut obj) = doc else { return doc };
    let parse = |list: &str| list.split(',').filter_map(|s| selector(schema, s)).collect::<Vec<_>>();
    if let Some(list) = attributes.filter(|l| !l.trim().is_empty()) {
        let wanted = parse(list);
        let mut out = Map::new();
        for (k, v) in obj {
            if k == "id" || k == "schemas" {
                out.insert(k, v);
                continue;
            }
            let picks: Vec<&Selector> = wanted.iter().filter(|s| s.top.eq_ignore_ascii_case(&k)).collect();
            if picks.is_empty() {
                continue;
            }
            if picks.iter().any(|s| s.rest.is_none()) {
                out.insert(k, v);
                continue;
            }
            let keep: Vec<&str> = picks.iter().filter_map(|s| s.rest.as_deref()).collect();
            let narrow = |item: &Value| -> Value {
                match item {
                    Value::Object(o) => Value::Object(
                        o.iter()
                            .filter(|(sk, _)| keep.iter().any(|w| w.eq_ignore_ascii_case(sk)))
                            .map(|(sk, sv)| (sk.clone(), sv.clone()))
                            .collect(),
                    ),
                    other => other.clone(),
                }
            };
            let narrowed = match &v {
                Value::Array(items) => Value::Array(items.iter().map(narrow).collect()),
                other => narrow(other),
            };
            out.insert(k, narrowed);
        }
        return Value::Object(out);
    }
    if let Some(list) = excluded {
        for s in parse(list) {
            if s.top.eq_ignore_ascii_case("id") || s.top.eq_ignore_ascii_case("schemas") {
                continue;
            }
            let Some(key) = key_of(&obj, &s.top).cloned() else { continue };
            match s.rest {
                None => {
                    obj.remove(&key);
                }
                Some(rest) => {
                    let strip = |item: &mut Value| {
                        if let Value::Object(o) = item
                            && let Some(k) = key_of(o, &rest).cloned()
                        {
                            o.remove(&k);
                        }
                    };
                    match obj.get_mut(&key) {
                        Some(Value::Array(items)) => items.iter_mut().for_each(strip),
                        Some(other) => strip(other),
                        None => {}
                    }
                }
            }
        }
    }
    Value::Object(obj)
}
