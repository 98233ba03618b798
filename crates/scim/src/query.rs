//! Turning SCIM list parameters into an indexed directory query.

use lockstep_domain::IdentityId;
use lockstep_store::{IdentityFilter, IdentityQuery};
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

/// Validates list parameters into a store query. Returns the query and the
/// effective 1-based `startIndex`.
pub fn list_query(params: &ListParams) -> Result<(IdentityQuery, usize), ScimProblem> {
    // RFC 7644 §3.4.2.4: startIndex < 1 is read as 1, negative count as 0.
    let start = usize::try_from(params.start_index.unwrap_or(1).max(1)).unwrap_or(1);
    let count = match params.count {
        None => DEFAULT_COUNT,
        Some(c) => usize::try_from(c.max(0)).unwrap_or(0).min(MAX_COUNT),
    };
    let filter = match params.filter.as_deref().map(str::trim) {
        None | Some("") => IdentityFilter::All,
        Some(text) => {
            let parsed = filter::parse(text).map_err(|e| ScimProblem::bad(ScimType::InvalidFilter, e.0))?;
            indexed(&parsed).ok_or_else(|| {
                ScimProblem::bad(
                    ScimType::InvalidFilter,
                    format!(
                        "filter {text:?} is valid SCIM but not supported yet: use eq on userName, externalId or id"
                    ),
                )
            })?
        }
    };
    Ok((IdentityQuery { filter, offset: start - 1, limit: count }, start))
}

fn indexed(f: &Filter) -> Option<IdentityFilter> {
    let Filter::Compare { path, op: CompareOp::Eq, value: Value::String(v) } = f else {
        return None;
    };
    if path.sub.is_some()
        || path.urn.as_deref().is_some_and(|u| !u.eq_ignore_ascii_case(lockstep_proto::scim::USER_SCHEMA))
    {
        return None;
    }
    match path.attr.to_ascii_lowercase().as_str() {
        "username" => Some(IdentityFilter::UserNameEq(v.clone())),
        "externalid" => Some(IdentityFilter::ExternalIdEq(v.clone())),
        // An id that is not a UUID matches nothing; a nil UUID is such an id.
        "id" => Some(IdentityFilter::IdEq(
            v.parse::<IdentityId>().unwrap_or(IdentityId::from_uuid(uuid::Uuid::nil())),
        )),
        _ => None,
    }
}
