//! Planning a SCIM listing: which part of the filter the directory's
//! indexes answer, and which part must still be checked per resource.
//!
//! A filter is translated bottom-up into a store [`StoreFilter`] that is
//! either *exact* (selects precisely what the SCIM filter selects, so the
//! store pages and counts by itself) or a *superset* (a narrowing; the full
//! SCIM filter is then evaluated on each candidate's document with
//! [`crate::eval::matches`]). Conditions on `id`, `userName`, `externalId`,
//! `displayName`, `emails.value`, `active` and the Lockstep
//! `identityKind` (Users) and `id`, `displayName`, `externalId` (Groups)
//! are exact. Anything else — `name.familyName`, `meta.lastModified`,
//! `groups.value` — is checked on candidates, of which at most
//! [`MAX_EXAMINED`] are examined: beyond that the request is refused with
//! `tooMany` rather than scanning a large directory per request.

use lockstep_store::{
    Filter as StoreFilter, GroupField, GroupQuery, IdentityField, IdentityQuery, SearchField, TextOp,
};
use serde_json::Value;

use crate::error::{ScimProblem, ScimType};
use crate::filter::{self, AttrPath, CompareOp, Filter};
use crate::schema::{GROUP_SCHEMA, LOCKSTEP_SCHEMA, USER_SCHEMA};
use lockstep_domain::IdentityKind;

/// Default page size when `count` is absent: the largest page, so a client
/// that does not page still sees every match up to `filter.maxResults`.
pub const DEFAULT_COUNT: usize = MAX_COUNT;
/// Largest page served (advertised as `filter.maxResults`).
pub const MAX_COUNT: usize = 1000;
/// Most candidates a filter that the indexes answer only in part may make
/// the server examine.
pub const MAX_EXAMINED: usize = 20_000;

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

/// A planned listing over fields `F`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPlan<F> {
    /// What the store selects.
    pub index: StoreFilter<F>,
    /// The SCIM filter still to check on each candidate (`None`: the index
    /// is exact).
    pub residual: Option<Filter>,
    /// Zero-based offset of the page among the matches.
    pub offset: usize,
    /// Page size.
    pub limit: usize,
    /// The effective 1-based `startIndex` to report.
    pub start: usize,
}

impl<F: Clone> ListPlan<F> {
    /// `(offset, limit)` to ask the store for: the page itself when the
    /// index is exact, else every candidate up to one past the cap.
    pub fn window(&self) -> (usize, usize) {
        match self.residual {
            None => (self.offset, self.limit),
            Some(_) => (0, MAX_EXAMINED + 1),
        }
    }

    /// The page and total from what the store returned for [`Self::window`]
    /// (`total` is the store's count), checking the residual with `matches`.
    pub fn finish<T>(
        &self,
        total: usize,
        items: Vec<T>,
        matches: impl Fn(&T, &Filter) -> bool,
    ) -> Result<(usize, Vec<T>), ScimProblem> {
        let Some(residual) = &self.residual else { return Ok((total, items)) };
        if total > MAX_EXAMINED {
            return Err(ScimProblem::bad(
                ScimType::TooMany,
                format!(
                    "the filter is answered from an index only in part and leaves {total} candidates, more than \
                     the {MAX_EXAMINED} the server examines per request; add a condition on an indexed attribute \
                     (id, userName, externalId, displayName, emails.value, active)"
                ),
            ));
        }
        let hits: Vec<T> = items.into_iter().filter(|item| matches(item, residual)).collect();
        let total = hits.len();
        Ok((total, hits.into_iter().skip(self.offset).take(self.limit).collect()))
    }
}

impl ListPlan<IdentityField> {
    /// The store query for [`Self::window`].
    pub fn identity_query(&self) -> IdentityQuery {
        let (offset, limit) = self.window();
        IdentityQuery { filter: self.index.clone(), offset, limit }
    }
}

impl ListPlan<GroupField> {
    /// The store query for [`Self::window`].
    pub fn group_query(&self) -> GroupQuery {
        let (offset, limit) = self.window();
        GroupQuery { filter: self.index.clone(), offset, limit }
    }
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

fn plan<F: SearchField>(
    params: &ListParams,
    field: impl Fn(&AttrPath, bool) -> Option<F> + Copy,
) -> Result<ListPlan<F>, ScimProblem> {
    let (offset, limit, start) = paging(params);
    let parsed = match params.filter.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(filter::parse(text).map_err(|e| ScimProblem::bad(ScimType::InvalidFilter, e.0))?),
    };
    let (index, residual) = match parsed {
        None => (StoreFilter::All, None),
        Some(f) => match narrow(&f, field, false) {
            Some(Narrowed { filter, exact: true }) => (filter, None),
            Some(Narrowed { filter, exact: false }) => (filter, Some(f)),
            None => (StoreFilter::All, Some(f)),
        },
    };
    Ok(ListPlan { index, residual, offset, limit, start })
}

/// Plans a User listing (of the filter alone; the resource type adds its
/// scope with [`ListPlan::within`]).
pub fn list_query(params: &ListParams) -> Result<ListPlan<IdentityField>, ScimProblem> {
    plan(params, user_field)
}

/// Plans a listing of an agent resource type (of the filter alone, like
/// [`list_query`]): `urn` is its schema, `handles` the attributes naming
/// its handle.
pub fn non_human_list_query(
    params: &ListParams,
    urn: &'static str,
    handles: &'static [&'static str],
) -> Result<ListPlan<IdentityField>, ScimProblem> {
    plan(params, move |path: &AttrPath, multi: bool| non_human_field(path, multi, urn, handles))
}

/// The identities of one kind (an agent resource type's scope).
pub fn kind_only(kind: IdentityKind) -> StoreFilter<IdentityField> {
    StoreFilter::eq(IdentityField::Kind, kind.as_str())
}

impl<F> ListPlan<F> {
    /// The plan restricted to what `scope` selects as well (exact stays
    /// exact: the scope is an index condition).
    pub fn within(mut self, scope: StoreFilter<F>) -> Self {
        self.index = match self.index {
            StoreFilter::All => scope,
            StoreFilter::And(mut parts) => {
                parts.push(scope);
                StoreFilter::And(parts)
            }
            other => StoreFilter::And(vec![other, scope]),
        };
        self
    }
}

/// The indexed field of an agent resource type a path names.
fn non_human_field(path: &AttrPath, multi: bool, urn: &str, handles: &[&str]) -> Option<IdentityField> {
    if multi || path.sub.is_some() || !in_schema(path, urn) {
        return None;
    }
    if handles.iter().any(|h| h.eq_ignore_ascii_case(&path.attr)) {
        return Some(IdentityField::UserName);
    }
    match path.attr.to_ascii_lowercase().as_str() {
        "id" => Some(IdentityField::Id),
        "externalid" => Some(IdentityField::ExternalId),
        "displayname" => Some(IdentityField::DisplayName),
        "active" => Some(IdentityField::Active),
        _ => None,
    }
}

/// Plans a Group listing.
pub fn group_list_query(params: &ListParams) -> Result<ListPlan<GroupField>, ScimProblem> {
    plan(params, group_field)
}

/// Whether a path's schema prefix (if any) is `urn`.
fn in_schema(path: &AttrPath, urn: &str) -> bool {
    path.urn.as_deref().is_none_or(|u| u.eq_ignore_ascii_case(urn))
}

/// The indexed User field a path names. `multi` says the path is relative
/// to one address inside an `emails[...]` filter.
fn user_field(path: &AttrPath, multi: bool) -> Option<IdentityField> {
    let attr = path.attr.to_ascii_lowercase();
    let sub = path.sub.as_deref().map(str::to_ascii_lowercase);
    if multi {
        return (attr == "value" && sub.is_none() && path.urn.is_none()).then_some(IdentityField::Email);
    }
    if path.urn.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(LOCKSTEP_SCHEMA)) {
        return (attr == "identitykind" && sub.is_none()).then_some(IdentityField::Kind);
    }
    if !in_schema(path, USER_SCHEMA) {
        return None;
    }
    match (attr.as_str(), sub.as_deref()) {
        ("id", None) => Some(IdentityField::Id),
        ("username", None) => Some(IdentityField::UserName),
        ("externalid", None) => Some(IdentityField::ExternalId),
        ("displayname", None) => Some(IdentityField::DisplayName),
        ("active", None) => Some(IdentityField::Active),
        ("emails", Some("value")) => Some(IdentityField::Email),
        _ => None,
    }
}

fn group_field(path: &AttrPath, multi: bool) -> Option<GroupField> {
    if multi || path.sub.is_some() || !in_schema(path, GROUP_SCHEMA) {
        return None;
    }
    match path.attr.to_ascii_lowercase().as_str() {
        "id" => Some(GroupField::Id),
        "displayname" => Some(GroupField::DisplayName),
        "externalid" => Some(GroupField::ExternalId),
        _ => None,
    }
}

/// A store filter and whether it selects exactly what the SCIM filter does
/// (else it selects a superset).
struct Narrowed<F> {
    filter: StoreFilter<F>,
    exact: bool,
}

fn exact<F>(filter: StoreFilter<F>) -> Option<Narrowed<F>> {
    Some(Narrowed { filter, exact: true })
}

/// The store filter for `f`, `None` when the indexes cannot narrow it.
/// `multi`: inside `emails[...]`, where paths are relative to one address.
fn narrow<F: SearchField>(
    f: &Filter,
    field: impl Fn(&AttrPath, bool) -> Option<F> + Copy,
    multi: bool,
) -> Option<Narrowed<F>> {
    match f {
        Filter::Compare { path, op, value } => compare(field(path, multi)?, *op, value, multi),
        Filter::Present(path) => exact(StoreFilter::Present(field(path, multi)?)),
        Filter::And(a, b) => match (narrow(a, field, multi), narrow(b, field, multi)) {
            // Inside a value filter both parts must hold for the *same*
            // address; the store can only say each holds for some address.
            (Some(a), Some(b)) => Some(Narrowed {
                exact: a.exact && b.exact && !multi,
                filter: StoreFilter::And(vec![a.filter, b.filter]),
            }),
            (Some(one), None) | (None, Some(one)) => Some(Narrowed { exact: false, ..one }),
            (None, None) => None,
        },
        Filter::Or(a, b) => {
            let (a, b) = (narrow(a, field, multi)?, narrow(b, field, multi)?);
            Some(Narrowed { exact: a.exact && b.exact, filter: StoreFilter::Or(vec![a.filter, b.filter]) })
        }
        // "Some address is not X" is not "no address is X".
        Filter::Not(_) if multi => None,
        Filter::Not(inner) => match narrow(inner, field, multi)? {
            Narrowed { filter, exact: true } => exact(StoreFilter::Not(Box::new(filter))),
            Narrowed { exact: false, .. } => None,
        },
        Filter::ValuePath { path, filter } => {
            let emails = !multi
                && path.sub.is_none()
                && path.attr.eq_ignore_ascii_case("emails")
                && in_schema(path, USER_SCHEMA);
            if emails { narrow(filter, field, true) } else { None }
        }
    }
}

fn compare<F: SearchField>(field: F, op: CompareOp, value: &Value, multi: bool) -> Option<Narrowed<F>> {
    let text = |op: TextOp, value: String| StoreFilter::Text { field, op, value };
    // A boolean attribute compared with a string, or the reverse, is false
    // in the evaluator too; leave such oddities to it.
    if field.boolean() != value.is_boolean() {
        return None;
    }
    match value {
        // `active` is the only boolean indexed; it is rendered for every
        // User, so eq/ne are exact, and an ordering on a boolean is false.
        Value::Bool(b) => match op {
            CompareOp::Eq => exact(text(TextOp::Eq, b.to_string())),
            CompareOp::Ne => exact(text(TextOp::Eq, (!b).to_string())),
            _ => exact(StoreFilter::Not(Box::new(StoreFilter::All))),
        },
        Value::String(s) => {
            let op = match op {
                CompareOp::Eq => TextOp::Eq,
                CompareOp::Co => TextOp::Contains,
                CompareOp::Sw => TextOp::StartsWith,
                CompareOp::Ew => TextOp::EndsWith,
                CompareOp::Gt => TextOp::Gt,
                CompareOp::Ge => TextOp::Ge,
                CompareOp::Lt => TextOp::Lt,
                CompareOp::Le => TextOp::Le,
                // `ne` on a multi-valued attribute holds when *some* value
                // differs; only single-valued fields are `not eq`.
                CompareOp::Ne if multi || field.multi_valued() => return None,
                CompareOp::Ne => return exact(StoreFilter::Not(Box::new(text(TextOp::Eq, s.clone())))),
            };
            exact(text(op, s.clone()))
        }
        _ => None,
    }
}
