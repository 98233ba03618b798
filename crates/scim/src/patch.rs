//! The PATCH engine (RFC 7644 §3.5.2) over a User document.
//!
//! Operations apply in order to a copy of the current document; the result
//! is validated like a PUT body before anything is stored, so a PATCH either
//! applies whole or not at all.
//!
//! Accepted deviations, for real provisioning clients:
//! - op names in any case (`Replace`, `ADD`): Entra ID sends capitalised ops;
//! - boolean values as strings (`"False"`): Entra ID without its
//!   `aadOptscim062020` flag; converted when the document is validated;
//! - dotted keys in a path-less value (`{"name.givenName": "Ann"}`): Entra ID
//!   with that flag.

use lockstep_proto::scim::{PATCH_SCHEMA, PatchRequest, USER_SCHEMA};
use serde_json::{Map, Value};

use crate::error::{ScimProblem, ScimType};
use crate::filter::AttrPath;
use crate::schema::{ENTERPRISE_SCHEMA, Shape, lookup, name_sub};

/// Most operations accepted in one request.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Where an operation writes.
#[derive(Debug)]
struct Target {
    attr: &'static str,
    shape: Shape,
    sub: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Result<Self, ScimProblem> {
        let invalid = |why: &str| ScimProblem::bad(ScimType::InvalidPath, format!("path {path:?}: {why}"));
        if path.contains('[') {
            return Err(invalid("value-filtered paths are not supported yet"));
        }
        if path.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
            return Ok(Self { attr: ENTERPRISE_SCHEMA, shape: Shape::Complex(&[]), sub: None });
        }
        let parsed = AttrPath::parse(path).map_err(|e| invalid(&e.0))?;
        if let Some(urn) = &parsed.urn {
            if urn.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
                if parsed.sub.is_some() {
                    return Err(invalid("sub-attributes of enterprise attributes are not supported yet"));
                }
                return Ok(Self {
                    attr: ENTERPRISE_SCHEMA,
                    shape: Shape::Complex(&[]),
                    sub: Some(parsed.attr),
                });
            }
            if !urn.eq_ignore_ascii_case(USER_SCHEMA) {
                return Err(invalid("unknown schema"));
            }
        }
        let (attr, shape) = lookup(&parsed.attr).ok_or_else(|| invalid("unknown attribute"))?;
        if shape == Shape::ReadOnly {
            return Err(ScimProblem::bad(ScimType::Mutability, format!("attribute {attr:?} is read-only")));
        }
        let sub = match (parsed.sub, shape) {
            (None, _) => None,
            (Some(sub), Shape::Complex(_)) => {
                Some(name_sub(&sub).ok_or_else(|| invalid("unknown sub-attribute"))?.to_owned())
            }
            (Some(_), Shape::MultiComplex) => {
                return Err(invalid(
                    "sub-attributes of multi-valued attributes need a value filter, which is not supported yet",
                ));
            }
            (Some(_), _) => return Err(invalid("attribute has no sub-attributes")),
        };
        Ok(Self { attr, shape, sub })
    }
}

/// Applies a PATCH request to `doc` (a rendered User). On error `doc` may be
/// partly changed: callers patch a copy and discard it on error.
pub fn apply_patch(doc: &mut Map<String, Value>, request: &PatchRequest) -> Result<(), ScimProblem> {
    if !request.schemas.iter().any(|s| s.eq_ignore_ascii_case(PATCH_SCHEMA)) {
        return Err(ScimProblem::bad(
            ScimType::InvalidSyntax,
            format!("schemas must contain {PATCH_SCHEMA}"),
        ));
    }
    if request.operations.is_empty() {
        return Err(ScimProblem::bad(ScimType::InvalidValue, "Operations must not be empty"));
    }
    if request.operations.len() > MAX_OPERATIONS {
        return Err(ScimProblem::bad(
            ScimType::InvalidValue,
            format!("at most {MAX_OPERATIONS} operations per request"),
        ));
    }
    for (i, operation) in request.operations.iter().enumerate() {
        let op = match operation.op.to_ascii_lowercase().as_str() {
            "add" => Op::Add,
            "replace" => Op::Replace,
            "remove" => Op::Remove,
            other => {
                return Err(ScimProblem::bad(
                    ScimType::InvalidSyntax,
                    format!("Operations[{i}]: unknown op {other:?} (expected add, replace or remove)"),
                ));
            }
        };
        match (operation.path.as_deref(), op) {
            (None, Op::Remove) => {
                return Err(ScimProblem::bad(
                    ScimType::NoTarget,
                    format!("Operations[{i}]: remove requires a path"),
                ));
            }
            (None, _) => {
                let Some(Value::Object(values)) = &operation.value else {
                    return Err(ScimProblem::bad(
                        ScimType::InvalidValue,
                        format!("Operations[{i}]: without a path, value must be an object of attributes"),
                    ));
                };
                // Keys may be plain (`active`), dotted (`name.givenName`) or
                // URN-qualified (`urn:…:User:displayName`): all are paths.
                for (key, value) in values {
                    set(doc, &Target::parse(key)?, value, op)?;
                }
            }
            (Some(path), Op::Remove) => remove(doc, &Target::parse(path)?),
            (Some(path), _) => {
                let value = operation.value.as_ref().ok_or_else(|| {
                    ScimProblem::bad(
                        ScimType::InvalidValue,
                        format!("Operations[{i}]: {op:?} requires a value"),
                    )
                })?;
                set(doc, &Target::parse(path)?, value, op)?;
            }
        }
    }
    Ok(())
}

fn set(doc: &mut Map<String, Value>, target: &Target, value: &Value, op: Op) -> Result<(), ScimProblem> {
    if target.shape == Shape::WriteOnly {
        return Ok(());
    }
    if value.is_null() {
        remove(doc, target);
        return Ok(());
    }
    if let Some(sub) = &target.sub {
        let entry = doc.entry(target.attr.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(obj) = entry else {
            return Err(ScimProblem::bad(ScimType::InvalidValue, format!("{} is not complex", target.attr)));
        };
        obj.insert(sub.clone(), value.clone());
        return Ok(());
    }
    match target.shape {
        Shape::MultiComplex => {
            let items: Vec<Value> = match value {
                Value::Array(items) => items.clone(),
                Value::Object(_) => vec![value.clone()],
                _ => {
                    return Err(ScimProblem::bad(
                        ScimType::InvalidValue,
                        format!("{} takes an object or an array of objects", target.attr),
                    ));
                }
            };
            match (op, doc.get_mut(target.attr)) {
                (Op::Add, Some(Value::Array(existing))) => {
                    for item in items {
                        if !existing.contains(&item) {
                            existing.push(item);
                        }
                    }
                }
                _ => {
                    doc.insert(target.attr.to_owned(), Value::Array(items));
                }
            }
        }
        Shape::Complex(_) => {
            let Value::Object(values) = value else {
                return Err(ScimProblem::bad(
                    ScimType::InvalidValue,
                    format!("{} takes an object", target.attr),
                ));
            };
            // RFC 7644 §3.5.2.1/3: sub-attributes not named are left unchanged.
            let entry = doc.entry(target.attr.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            match entry {
                Value::Object(obj) => {
                    for (k, v) in values {
                        let key = if target.attr == ENTERPRISE_SCHEMA {
                            Some(k.clone())
                        } else {
                            name_sub(k).map(str::to_owned)
                        };
                        let key = key.ok_or_else(|| {
                            ScimProblem::bad(
                                ScimType::InvalidPath,
                                format!("unknown sub-attribute {}.{k}", target.attr),
                            )
                        })?;
                        obj.insert(key, v.clone());
                    }
                }
                other => *other = value.clone(),
            }
        }
        _ => {
            doc.insert(target.attr.to_owned(), value.clone());
        }
    }
    Ok(())
}

fn remove(doc: &mut Map<String, Value>, target: &Target) {
    match &target.sub {
        None => {
            doc.remove(target.attr);
        }
        Some(sub) => {
            if let Some(Value::Object(obj)) = doc.get_mut(target.attr) {
                obj.remove(sub);
                if obj.is_empty() {
                    doc.remove(target.attr);
                }
            }
        }
    }
}
