//! Evaluating a parsed filter against a JSON value (a resource, or one
//! element of a multi-valued attribute in a value-filtered path).

use serde_json::Value;

use crate::filter::{AttrPath, CompareOp, Filter};

/// Attributes compared case-sensitively (RFC 7643 `caseExact: true`); every
/// other string comparison ignores case.
const CASE_EXACT: &[&str] = &["id", "externalId", "$ref"];

fn get<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// The values a path selects in `v` (several when it crosses a multi-valued
/// attribute).
fn select<'a>(v: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    // An extension attribute lives in the object keyed by its schema URN;
    // a core-schema prefix names the top level.
    let v = path.urn.as_deref().and_then(|urn| get(v, urn)).unwrap_or(v);
    let Some(top) = get(v, &path.attr) else { return Vec::new() };
    let tops: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    match &path.sub {
        None => tops,
        Some(sub) => tops.into_iter().filter_map(|t| get(t, sub)).collect(),
    }
}

fn compare(actual: &Value, op: CompareOp, expected: &Value, case_exact: bool) -> bool {
    use std::cmp::Ordering;
    let ordering = match (actual, expected) {
        (Value::String(a), Value::String(b)) => {
            let (a, b) = if case_exact {
                (a.clone(), b.clone())
            } else {
                (lockstep_domain::text::fold(a), lockstep_domain::text::fold(b))
            };
            match op {
                CompareOp::Co => return a.contains(&b),
                CompareOp::Sw => return a.starts_with(&b),
                CompareOp::Ew => return a.ends_with(&b),
                _ => a.cmp(&b),
            }
        }
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            _ => return false,
        },
        (Value::Bool(a), Value::Bool(b)) => match op {
            CompareOp::Eq => return a == b,
            CompareOp::Ne => return a != b,
            _ => return false,
        },
        (_, Value::Null) => return matches!(op, CompareOp::Ne),
        _ => return false,
    };
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

/// Whether `v` matches `filter`.
pub fn matches(filter: &Filter, v: &Value) -> bool {
    match filter {
        Filter::And(a, b) => matches(a, v) && matches(b, v),
        Filter::Or(a, b) => matches(a, v) || matches(b, v),
        Filter::Not(f) => !matches(f, v),
        Filter::Present(path) => select(v, path).iter().any(|x| match x {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        }),
        Filter::Compare { path, op, value } => {
            let leaf = path.sub.as_deref().unwrap_or(&path.attr);
            let case_exact = CASE_EXACT.iter().any(|n| n.eq_ignore_ascii_case(leaf));
            let selected = select(v, path);
            if selected.is_empty() {
                // An absent attribute is "not equal" to anything.
                return matches!(op, CompareOp::Ne) && !value.is_null();
            }
            selected.iter().any(|x| compare(x, *op, value, case_exact))
        }
        Filter::ValuePath { path, filter } => {
            let v = path.urn.as_deref().and_then(|urn| get(v, urn)).unwrap_or(v);
            let Some(Value::Array(items)) = get(v, &path.attr) else { return false };
            items.iter().any(|item| matches(filter, item))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse;
    use serde_json::json;

    #[test]
    fn evaluates_the_rfc_examples() {
        let user = json!({
            "userName": "BJensen", "externalId": "X1", "active": true, "title": "Tour Guide",
            "emails": [{"value": "bjensen@example.com", "type": "work"}, {"value": "babs@jensen.org", "type": "home"}],
            "meta": {"lastModified": "2011-05-13T04:42:34Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984", "manager": {"value": "26118915"}
            }
        });
        for (f, want) in [
            ("userName eq \"bjensen\"", true),
            ("externalId eq \"x1\"", false),
            ("title pr", true),
            ("nickName pr", false),
            ("emails[type eq \"work\" and value co \"@example.com\"]", true),
            ("emails[type eq \"work\" and value co \"@jensen.org\"]", false),
            ("emails.value ew \".org\"", true),
            ("meta.lastModified gt \"2011-05-13T04:42:34Z\"", false),
            ("meta.lastModified ge \"2011-05-13T04:42:34Z\"", true),
            ("active eq true and not (userName sw \"x\")", true),
            ("userName ne \"bjensen\" or title eq \"tour guide\"", true),
            ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"701984\"", true),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"26118915\"",
                true,
            ),
            ("urn:ietf:params:scim:schemas:core:2.0:User:userName sw \"bj\"", true),
        ] {
            assert_eq!(matches(&parse(f).unwrap(), &user), want, "{f}");
        }
    }
}
