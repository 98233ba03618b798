//! Turning SCIM list parameters into an indexed directory query.

use lockstep_domain::{GroupId, IdentityId};
use lockstep_store::{GroupFilter, GroupQuery, IdentityFilter, IdentityQuery};
use serde_json::Value;

use crate::error::{ScimProblem, ScimType};
use crate::filter::{self, CompareOp, Filter};

/// Default page size when `count` is absent: the largest page, so a client
/// that does not page still sees every match up to `filter.maxResults`.
pub const DEFAULT_COUNT: usize = MAX_COUNT;
/// Largest page served (advertised as `filter.maxResults`).
pub const MAX_COUNT: usize = 1000;

/// Raw list parameters (`filter`, `startIndex`, `count`).
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    /// The filter expression.
    pub filter: Option<String>,
    /// 1-based start index.
    pub start_index: Option<i64>,
    /// Page size.
    pub count: Option<i64>,
}

/// `(offset, limit, startIndex)` of list parameters. RFC 7644 §3.4.2.4:
/// startIndex < 1 is read as 1, a negative count as 0.
fn paging(params: &ListParams) -> (usize, usize, usize) {
    let start = usize::try_from(params.start_index.unwrap_or(1).max(1)).unwrap_or(1);
    let count = match params.count {
        None => DEFAULT_COUNT,
        Some(c) => usize::try_from(c.max(0)).unwrap_or(0).min(MAX_COUNT),
    };
    (start - 1, count, start)
}

/// Parses a filter and maps it with `indexed`, or says what is supported.
fn compile<T>(
    params: &ListParams,
    supported: &str,
    indexed: impl Fn(&Filter) -> Option<T>,
) -> Result<Option<T>, ScimProblem> {
    match params.filter.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => {
            let parsed = filter::parse(text).map_err(|e| ScimProblem::bad(ScimType::InvalidFilter, e.0))?;
            indexed(&parsed).map(Some).ok_or_else(|| {
                ScimProblem::bad(
                    ScimType::InvalidFilter,
                    format!("filter {text:?} is valid SCIM but not supported yet: use eq on {supported}"),
                )
            })
        }
    }
}

/// Validates list parameters into a User query. Returns the query and the
/// effective 1-based `startIndex`.
pub fn list_query(params: &ListParams) -> Result<(IdentityQuery, usize), ScimProblem> {
    let (offset, limit, start) = paging(params);
    let filter =
        compile(params, "userName, externalId, id or the Lockstep extension's identityKind", indexed)?
            .unwrap_or(IdentityFilter::All);
    Ok((IdentityQuery { filter, offset, limit }, start))
}

/// Validates list parameters into a Group query.
pub fn group_list_query(params: &ListParams) -> Result<(GroupQuery, usize), ScimProblem> {
    let (offset, limit, start) = paging(params);
    let filter = compile(params, "displayName, externalId or id", |f| {
        let (attr, value) = simple_eq(f, crate::schema::GROUP_SCHEMA)?;
        match attr.as_str() {
            "displayname" => Some(GroupFilter::DisplayNameEq(value)),
            "externalid" => Some(GroupFilter::ExternalIdEq(value)),
            "id" => Some(GroupFilter::IdEq(
                value.parse::<GroupId>().unwrap_or(GroupId::from_uuid(uuid::Uuid::nil())),
            )),
            _ => None,
        }
    })?
    .unwrap_or(GroupFilter::All);
    Ok((GroupQuery { filter, offset, limit }, start))
}

/// `attr eq "string"` on a top-level attribute of `schema`: (lower-case attribute, value).
fn simple_eq(f: &Filter, schema: &str) -> Option<(String, String)> {
    let Filter::Compare { path, op: CompareOp::Eq, value: Value::String(v) } = f else {
        return None;
    };
    if path.sub.is_some() || path.urn.as_deref().is_some_and(|u| !u.eq_ignore_ascii_case(schema)) {
        return None;
    }
    Some((path.attr.to_ascii_lowercase(), v.clone()))
}

fn indexed(f: &Filter) -> Option<IdentityFilter> {
    if let Some((attr, v)) = simple_eq(f, crate::schema::LOCKSTEP_SCHEMA)
        && attr == "identitykind"
    {
        return v.parse().ok().map(IdentityFilter::KindEq);
    }
    let (attr, v) = simple_eq(f, lockstep_proto::scim::USER_SCHEMA)?;
    match attr.as_str() {
        "username" => Some(IdentityFilter::UserNameEq(v)),
        "externalid" => Some(IdentityFilter::ExternalIdEq(v)),
        // An id that is not a UUID matches nothing; a nil UUID is such an id.
        "id" => Some(IdentityFilter::IdEq(
            v.parse::<IdentityId>().unwrap_or(IdentityId::from_uuid(uuid::Uuid::nil())),
        )),
        _ => None,
    }
}
