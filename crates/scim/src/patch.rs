//! The PATCH engine (RFC 7644 §3.5.2) over a resource document.
//!
//! Operations apply in order to a copy of the current document; the result
//! is validated like a PUT body before anything is stored, so a PATCH either
//! applies whole or not at all.
//!
//! Accepted deviations, for real provisioning clients:
//! - op names in any case (`Replace`, `ADD`): Entra ID sends capitalised ops;
//! - boolean values as strings (`"False"`): Entra ID without its
//!   `aadOptscim062020` flag; converted when the document is validated;
//! - dotted and URN-qualified keys in a path-less value
//!   (`{"name.givenName": "Ann"}`): Entra ID with that flag;
//! - `remove` of a multi-valued attribute with a `value` array removes just
//!   those values (Entra ID's member removal), not the whole attribute;
//! - `remove` through a value filter that matches nothing succeeds without
//!   change, so a client retrying a removal is not told it failed;
//! - the enterprise `manager` as a plain string (`"value": "<manager id>"`,
//!   and `""` to clear it), with a path or inside a path-less value:
//!   Microsoft Entra ID sets and clears the manager this way.

use lockstep_proto::scim::{PATCH_SCHEMA, PatchRequest};
use serde_json::{Map, Value};

use crate::document::ResourceSchema;
use crate::error::{ScimProblem, ScimType};
use crate::eval::matches;
use crate::filter::{self, Filter};
use crate::schema::{Attr, Mutability, find};

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
enum Target {
    /// A whole extension object (`path` is the extension URN).
    Extension { urn: &'static str, attrs: &'static [Attr] },
    /// An attribute, in the document root or inside an extension object.
    Attribute {
        ext: Option<&'static str>,
        attr: &'static Attr,
        filter: Option<Filter>,
        sub: Option<&'static Attr>,
    },
}

fn invalid_path(path: &str, why: &str) -> ScimProblem {
    ScimProblem::bad(ScimType::InvalidPath, format!("path {path:?}: {why}"))
}

fn read_only(name: &str) -> ScimProblem {
    ScimProblem::bad(ScimType::Mutability, format!("attribute {name:?} is read-only"))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    // `get`, not indexing: the prefix's length may fall inside a character
    // of `s` (found by fuzzing: `emailCC…som\u{1999}`).
    let head = s.get(..prefix.len())?;
    (head.eq_ignore_ascii_case(prefix) && s.as_bytes().get(prefix.len()) == Some(&b':'))
        .then(|| &s[prefix.len() + 1..])
}

fn resolve(schema: &ResourceSchema, path: &str) -> Result<Target, ScimProblem> {
    let path = path.trim();
    // Split off a value filter: `attr[filter]` or `attr[filter].sub`.
    let (head, filter, tail) = match path.find('[') {
        Some(open) => {
            let close = path.rfind(']').ok_or_else(|| invalid_path(path, "unbalanced \"[\""))?;
            if close < open {
                return Err(invalid_path(path, "unbalanced \"]\""));
            }
            let inner = filter::parse(&path[open + 1..close]).map_err(|e| invalid_path(path, &e.0))?;
            let tail = &path[close + 1..];
            let tail = match tail.strip_prefix('.') {
                Some(sub) => Some(sub),
                None if tail.is_empty() => None,
                None => return Err(invalid_path(path, "unexpected text after \"]\"")),
            };
            (&path[..open], Some(inner), tail)
        }
        None => (path, None, None),
    };
    if head.contains(']') {
        return Err(invalid_path(path, "unbalanced \"]\""));
    }
    let (ext, local) = match schema.extensions.iter().find_map(|(urn, attrs)| {
        if head.eq_ignore_ascii_case(urn) {
            Some((*urn, *attrs, None))
        } else {
            strip_prefix_ci(head, urn).map(|rest| (*urn, *attrs, Some(rest)))
        }
    }) {
        Some((urn, attrs, None)) => {
            if filter.is_some() {
                return Err(invalid_path(path, "an extension is not multi-valued"));
            }
            return Ok(Target::Extension { urn, attrs });
        }
        Some((urn, attrs, Some(rest))) => (Some((urn, attrs)), rest),
        None => (None, strip_prefix_ci(head, schema.core_urn).unwrap_or(head)),
    };
    let (name, dotted) = match local.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (local, None),
    };
    let sub_name = match (dotted, tail) {
        (Some(_), Some(_)) => return Err(invalid_path(path, "two sub-attributes")),
        (a, b) => a.or(b),
    };
    let attrs = ext.map_or(schema.core, |(_, attrs)| attrs);
    let attr = find(attrs, name).ok_or_else(|| {
        if crate::schema::is_common_read_only(name) || name.eq_ignore_ascii_case("groups") {
            read_only(name)
        } else {
            invalid_path(path, "unknown attribute")
        }
    })?;
    if attr.mutability == Mutability::ReadOnly {
        return Err(read_only(attr.name));
    }
    if filter.is_some() && !attr.multi {
        return Err(invalid_path(path, "a value filter needs a multi-valued attribute"));
    }
    let sub = match sub_name {
        None => None,
        Some(sub) => {
            let sub = find(attr.sub, sub).ok_or_else(|| invalid_path(path, "unknown sub-attribute"))?;
            if sub.mutability == Mutability::ReadOnly {
                return Err(read_only(&format!("{}.{}", attr.name, sub.name)));
            }
            Some(sub)
        }
    };
    Ok(Target::Attribute { ext: ext.map(|(urn, _)| urn), attr, filter, sub })
}

/// Applies a PATCH request to `doc` (a rendered resource). On error `doc` may
/// be partly changed: callers patch a copy and discard it on error.
pub fn apply_patch(
    schema: &ResourceSchema,
    doc: &mut Map<String, Value>,
    request: &PatchRequest,
) -> Result<(), ScimProblem> {
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
                // URN-qualified: each is a path of its own.
                for (key, value) in values {
                    if crate::schema::is_common_read_only(key) {
                        continue; // e.g. `schemas` or `id` echoed back by a client
                    }
                    set_entra(doc, &resolve(schema, key)?, value, op)?;
                }
            }
            (Some(path), Op::Remove) => {
                let target = resolve(schema, path)?;
                if let Target::Attribute { ext: None, attr, filter: None, sub: None } = &target
                    && attr.required
                {
                    return Err(ScimProblem::bad(
                        ScimType::InvalidValue,
                        format!("Operations[{i}]: {} is required and cannot be removed", attr.name),
                    ));
                }
                remove(doc, &target, operation.value.as_ref())?
            }
            (Some(path), _) => {
                let value = operation.value.as_ref().ok_or_else(|| {
                    ScimProblem::bad(
                        ScimType::InvalidValue,
                        format!("Operations[{i}]: {op:?} requires a value"),
                    )
                })?;
                set_entra(doc, &resolve(schema, path)?, value, op)?;
            }
        }
    }
    Ok(())
}

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// [`set`], accepting Entra ID's plain-string `manager`: a string becomes
/// `{"value": …}`, and an empty one clears the manager.
fn set_entra(
    doc: &mut Map<String, Value>,
    target: &Target,
    value: &Value,
    op: Op,
) -> Result<(), ScimProblem> {
    match target {
        Target::Attribute { ext: Some(urn), attr, filter: None, sub: None }
            if urn.eq_ignore_ascii_case(ENTERPRISE) && attr.name == "manager" =>
        {
            match value {
                Value::String(id) if id.trim().is_empty() => remove(doc, target, None),
                Value::String(id) => set(doc, target, &serde_json::json!({"value": id}), op),
                other => set(doc, target, other, op),
            }
        }
        Target::Extension { urn, .. } if urn.eq_ignore_ascii_case(ENTERPRISE) => {
            let Value::Object(fields) = value else { return set(doc, target, value, op) };
            let mut fields = fields.clone();
            let manager = fields.keys().find(|k| k.eq_ignore_ascii_case("manager")).cloned();
            let mut clear = false;
            if let Some(key) = manager
                && let Some(Value::String(id)) = fields.get(&key).cloned()
            {
                if id.trim().is_empty() {
                    fields.remove(&key);
                    clear = true;
                } else {
                    fields.insert(key, serde_json::json!({"value": id}));
                }
            }
            set(doc, target, &Value::Object(fields), op)?;
            if clear
                && let Some(Value::Object(ext)) =
                    doc.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(ENTERPRISE)).map(|(_, v)| v)
            {
                ext.retain(|k, _| !k.eq_ignore_ascii_case("manager"));
            }
            Ok(())
        }
        _ => set(doc, target, value, op),
    }
}

/// Inserts under `key`, replacing any key that differs only in case.
fn put_ci(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if let Some(existing) = obj.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned() {
        obj.remove(&existing);
    }
    obj.insert(key.to_owned(), value);
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(dst), Value::Object(src)) => {
            for (k, v) in src {
                put_ci(dst, k, v.clone());
            }
        }
        (dst, src) => *dst = src.clone(),
    }
}

/// The object an attribute lives in: the document root, or an extension
/// object (created if absent).
fn container<'a>(
    doc: &'a mut Map<String, Value>,
    ext: Option<&str>,
) -> Result<&'a mut Map<String, Value>, ScimProblem> {
    let Some(urn) = ext else { return Ok(doc) };
    let entry = doc.entry(urn.to_owned()).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry
        .as_object_mut()
        .ok_or_else(|| ScimProblem::bad(ScimType::InvalidValue, format!("{urn} must be an object")))
}

fn set(doc: &mut Map<String, Value>, target: &Target, value: &Value, op: Op) -> Result<(), ScimProblem> {
    let (ext, attr, filter, sub) = match target {
        Target::Extension { urn, attrs } => {
            let Value::Object(values) = value else {
                return Err(ScimProblem::bad(ScimType::InvalidValue, format!("{urn} takes an object")));
            };
            for (k, v) in values {
                if crate::schema::is_common_read_only(k) {
                    continue;
                }
                let attr = find(attrs, k).ok_or_else(|| {
                    ScimProblem::bad(ScimType::InvalidPath, format!("unknown attribute {urn}:{k}"))
                })?;
                let t = Target::Attribute { ext: Some(urn), attr, filter: None, sub: None };
                set(doc, &t, v, op)?;
            }
            return Ok(());
        }
        Target::Attribute { ext, attr, filter, sub } => (*ext, *attr, filter.as_ref(), *sub),
    };
    if attr.mutability == Mutability::WriteOnly {
        return Ok(()); // accepted, never stored
    }
    let obj = container(doc, ext)?;
    if value.is_null() {
        remove_in(obj, attr, filter, sub, None);
        return Ok(());
    }
    let current = obj.keys().find(|k| k.eq_ignore_ascii_case(attr.name)).cloned();
    match (filter, sub) {
        (Some(filter), _) => {
            let Some(Value::Array(items)) = current.as_ref().and_then(|k| obj.get_mut(k)) else {
                return Err(ScimProblem::bad(
                    ScimType::NoTarget,
                    format!("{}: no value matches the filter", attr.name),
                ));
            };
            let mut hit = false;
            for item in items.iter_mut().filter(|item| matches(filter, item)) {
                hit = true;
                match sub {
                    Some(sub) => {
                        if let Value::Object(o) = item {
                            put_ci(o, sub.name, value.clone());
                        }
                    }
                    None => merge(item, value),
                }
            }
            if !hit {
                return Err(ScimProblem::bad(
                    ScimType::NoTarget,
                    format!("{}: no value matches the filter", attr.name),
                ));
            }
        }
        (None, Some(sub)) if attr.multi => {
            // RFC 7644 §3.5.2.3: a sub-attribute of every value.
            if let Some(Value::Array(items)) = current.as_ref().and_then(|k| obj.get_mut(k)) {
                for item in items.iter_mut() {
                    if let Value::Object(o) = item {
                        put_ci(o, sub.name, value.clone());
                    }
                }
            }
        }
        (None, Some(sub)) => {
            let key = current.unwrap_or_else(|| attr.name.to_owned());
            let entry = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(o) = entry {
                put_ci(o, sub.name, value.clone());
            }
        }
        (None, None) if attr.multi => {
            let items: Vec<Value> = match value {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            match (op, current.as_ref().and_then(|k| obj.get_mut(k))) {
                (Op::Add, Some(Value::Array(existing))) => {
                    for item in items {
                        if !existing.contains(&item) {
                            existing.push(item);
                        }
                    }
                }
                _ => put_ci(obj, attr.name, Value::Array(items)),
            }
        }
        (None, None) if !attr.sub.is_empty() => {
            // RFC 7644 §3.5.2.1/3: sub-attributes not named are left unchanged.
            match current.as_ref().and_then(|k| obj.get_mut(k)) {
                Some(existing) => merge(existing, value),
                None => put_ci(obj, attr.name, value.clone()),
            }
        }
        (None, None) => put_ci(obj, attr.name, value.clone()),
    }
    Ok(())
}

fn remove(doc: &mut Map<String, Value>, target: &Target, value: Option<&Value>) -> Result<(), ScimProblem> {
    match target {
        Target::Extension { urn, .. } => {
            doc.remove(*urn);
        }
        Target::Attribute { ext, attr, filter, sub } => {
            let obj = container(doc, *ext)?;
            remove_in(obj, attr, filter.as_ref(), *sub, value);
            if let Some(urn) = ext
                && doc.get(*urn).is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
            {
                doc.remove(*urn);
            }
        }
    }
    Ok(())
}

fn remove_in(
    obj: &mut Map<String, Value>,
    attr: &Attr,
    filter: Option<&Filter>,
    sub: Option<&Attr>,
    value: Option<&Value>,
) {
    let Some(key) = obj.keys().find(|k| k.eq_ignore_ascii_case(attr.name)).cloned() else { return };
    // Entra ID: `remove` of `members` with a value array removes those members.
    let listed: Option<Vec<&Value>> = match (attr.multi, filter, sub, value) {
        (true, None, None, Some(Value::Array(list))) => {
            Some(list.iter().filter_map(|v| v.get("value")).collect())
        }
        _ => None,
    };
    let selected = |item: &Value| match (filter, &listed) {
        (Some(f), _) => matches(f, item),
        (None, Some(values)) => item.get("value").is_some_and(|v| values.contains(&v)),
        (None, None) => true,
    };
    match (obj.get_mut(&key), sub) {
        (Some(Value::Array(items)), None) if filter.is_some() || listed.is_some() => {
            items.retain(|item| !selected(item));
        }
        (Some(Value::Array(items)), Some(sub)) => {
            for item in items.iter_mut().filter(|item| selected(item)) {
                if let Value::Object(o) = item
                    && let Some(k) = o.keys().find(|k| k.eq_ignore_ascii_case(sub.name)).cloned()
                {
                    o.remove(&k);
                }
            }
        }
        (Some(Value::Object(o)), Some(sub)) => {
            if let Some(k) = o.keys().find(|k| k.eq_ignore_ascii_case(sub.name)).cloned() {
                o.remove(&k);
            }
        }
        _ => {
            obj.remove(&key);
            return;
        }
    }
    let empty = match obj.get(&key) {
        Some(Value::Array(items)) => items.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    };
    if empty {
        obj.remove(&key);
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    #[test]
    fn a_path_whose_prefix_length_falls_inside_a_character_is_an_error_not_a_panic() {
        let path = format!("email{}som\u{1999}", "C".repeat(47));
        assert!(strip_prefix_ci(&path, "urn:ietf:params:scim:schemas:extension:lockstep:2.0:User").is_none());
        assert_eq!(strip_prefix_ci("URN:X:y", "urn:x"), Some("y"));
    }
}
