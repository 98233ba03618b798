//! SCIM 2.0 resources backed by directory identities — `/Users`, `/Agents`
//! and `/AgenticApplications` — served by one generic handler per operation, driven by an
//! [`IdentityResource`] (its schema table, its document mapping, its
//! listing plan), and the discovery endpoints.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lockstep_domain::{Identity, IdentityId, IdentityKind, Origin, Scope, SourceId};
use lockstep_engine::{Engine, EngineError, UpdateError};
use lockstep_proto::scim::{ListResponse, PatchRequest, SCIM_MEDIA_TYPE, SEARCH_SCHEMA, SearchRequest};
use lockstep_scim::{
    Limits, ListParams, ListPlan, NonHumanResource, ResourceSchema, ScimProblem, ScimType, USER, discovery,
    project,
};
use lockstep_store::{IdentityField, IdentityFilter, IdentityQuery};
use serde_json::Value;

use crate::error::{ApiError, Flavor};
use crate::{AppState, Caller, blocking};

const FLAVOR: Flavor = Flavor::Scim;

/// The source name recorded on directory events written through SCIM.
pub const SCIM_SOURCE: &str = "scim";

pub(crate) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let root = match &state.config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    format!("{root}/scim/v2")
}

pub(crate) fn scim_json(status: StatusCode, doc: &Value, etag: Option<String>) -> Response {
    let mut r = (status, axum::Json(doc)).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_MEDIA_TYPE));
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        r.headers_mut().insert(header::ETAG, etag);
    }
    r
}

/// `attributes` / `excludedAttributes` of a request (RFC 7644 §3.9).
#[derive(Debug, Clone, Default)]
pub(crate) struct Projection {
    pub(crate) attributes: Option<String>,
    pub(crate) excluded: Option<String>,
}

impl Projection {
    /// Whether `attributes` names this path (case-insensitively): for
    /// sub-attributes returned only on request (`members.display`).
    pub(crate) fn requests(&self, path: &str) -> bool {
        self.attributes.as_deref().is_some_and(|a| a.split(',').any(|p| p.trim().eq_ignore_ascii_case(path)))
    }

    pub(crate) fn from_query(params: &HashMap<String, String>) -> Self {
        Self {
            attributes: params.get("attributes").cloned(),
            excluded: params.get("excludedAttributes").cloned(),
        }
    }

    /// From a SearchRequest's lists.
    pub(crate) fn from_lists(attributes: Option<Vec<String>>, excluded: Option<Vec<String>>) -> Self {
        Self { attributes: attributes.map(|a| a.join(",")), excluded: excluded.map(|a| a.join(",")) }
    }

    pub(crate) fn apply(&self, schema: &ResourceSchema, doc: Value) -> Value {
        project(schema, doc, self.attributes.as_deref(), self.excluded.as_deref())
    }
}

/// A rendered resource response: ETag from `meta.version`, `Location` on 201.
pub(crate) fn resource_response(
    status: StatusCode,
    full: Value,
    schema: &ResourceSchema,
    projection: &Projection,
) -> Response {
    let etag = full["meta"]["version"].as_str().map(str::to_owned);
    let location = full["meta"]["location"].as_str().map(str::to_owned);
    let doc = projection.apply(schema, full);
    let mut r = scim_json(status, &doc, etag);
    if status == StatusCode::CREATED
        && let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok())
    {
        r.headers_mut().insert(header::LOCATION, location);
    }
    r
}

/// An identity with the groups it belongs to, ready to render.
type UserView = lockstep_store::UserWithGroups;

/// A SCIM resource type whose resources are directory identities. The
/// generic handlers below serve every such type from this description, so
/// `/Users` and `/Agents` share one implementation of create, read, list,
/// search, replace, PATCH and delete (ETags, paging, projection and errors
/// included).
pub(crate) trait IdentityResource: Send + Sync + 'static {
    /// The schema table that validates documents and drives discovery.
    const SCHEMA: &'static ResourceSchema;

    /// Whether an identity is served by this type (a User id is not found
    /// under `/Agents`, nor an agent's under `/Users`).
    fn owns(identity: &Identity) -> bool;

    /// A POST or PUT body (or a patched document) as an identity.
    fn from_document(
        doc: &Value,
        id: IdentityId,
        current: Option<&Identity>,
        limits: &Limits,
    ) -> Result<Identity, ScimProblem>;

    /// A PATCH applied to the current identity.
    fn patch(current: &Identity, request: &PatchRequest, limits: &Limits) -> Result<Identity, ScimProblem>;

    /// The listing plan of a filter and page.
    fn plan(params: &ListParams) -> Result<ListPlan<lockstep_store::IdentityField>, ScimProblem>;

    /// The resource's document.
    fn render(view: &UserView, base: &str) -> Value;

    /// Whether a resource matches a filter (the part the indexes do not
    /// answer).
    fn matches(filter: &lockstep_scim::filter::Filter, view: &UserView) -> bool;
}

/// `/Users`: every identity but agents.
#[derive(Debug)]
pub(crate) struct Users;

impl IdentityResource for Users {
    const SCHEMA: &'static ResourceSchema = &USER;
    fn owns(identity: &Identity) -> bool {
        !matches!(identity.kind, IdentityKind::Agent | IdentityKind::AgenticApplication)
    }
    fn from_document(
        doc: &Value,
        id: IdentityId,
        current: Option<&Identity>,
        limits: &Limits,
    ) -> Result<Identity, ScimProblem> {
        lockstep_scim::user_from_document(doc, id, current, limits)
    }
    fn patch(current: &Identity, request: &PatchRequest, limits: &Limits) -> Result<Identity, ScimProblem> {
        lockstep_scim::patch_user(current, request, limits)
    }
    fn plan(params: &ListParams) -> Result<ListPlan<lockstep_store::IdentityField>, ScimProblem> {
        // Every kind but the agent resource types'.
        let others = lockstep_store::Filter::Or(vec![
            lockstep_scim::kind_only(IdentityKind::Agent),
            lockstep_scim::kind_only(IdentityKind::AgenticApplication),
        ]);
        lockstep_scim::list_query(params).map(|p| p.within(lockstep_store::Filter::Not(Box::new(others))))
    }
    fn render((identity, groups): &UserView, base: &str) -> Value {
        lockstep_scim::user_to_document(identity, groups, base)
    }
    fn matches(filter: &lockstep_scim::filter::Filter, (identity, groups): &UserView) -> bool {
        lockstep_scim::user_matches(filter, identity, groups)
    }
}

/// An agent resource type: identities of one non-human kind, described
/// by a [`NonHumanResource`].
pub(crate) trait NonHumanType: Send + Sync + 'static {
    /// Its description.
    const RESOURCE: &'static NonHumanResource;
    /// The attributes naming its handle (filters on them use the index).
    const HANDLES: &'static [&'static str];
}

/// `/Agents`: identities of kind `agent`.
#[derive(Debug)]
pub(crate) struct Agents;

impl NonHumanType for Agents {
    const RESOURCE: &'static NonHumanResource = &lockstep_scim::AGENTS;
    const HANDLES: &'static [&'static str] = &["agentUserName", "name"];
}

/// `/AgenticApplications`: identities of kind `agentic_application`.
#[derive(Debug)]
pub(crate) struct AgenticApplications;

impl NonHumanType for AgenticApplications {
    const RESOURCE: &'static NonHumanResource = &lockstep_scim::AGENTIC_APPLICATIONS;
    const HANDLES: &'static [&'static str] = &["name"];
}

impl<T: NonHumanType> IdentityResource for T {
    const SCHEMA: &'static ResourceSchema = T::RESOURCE.schema;
    fn owns(identity: &Identity) -> bool {
        identity.kind == T::RESOURCE.kind
    }
    fn from_document(
        doc: &Value,
        id: IdentityId,
        current: Option<&Identity>,
        limits: &Limits,
    ) -> Result<Identity, ScimProblem> {
        T::RESOURCE.from_document(doc, id, current, limits)
    }
    fn patch(current: &Identity, request: &PatchRequest, limits: &Limits) -> Result<Identity, ScimProblem> {
        T::RESOURCE.patch(current, request, limits)
    }
    fn plan(params: &ListParams) -> Result<ListPlan<lockstep_store::IdentityField>, ScimProblem> {
        let resource = T::RESOURCE;
        lockstep_scim::non_human_list_query(params, resource.schema.core_urn, T::HANDLES)
            .map(|p| p.within(lockstep_scim::kind_only(resource.kind)))
    }
    fn render((identity, _): &UserView, base: &str) -> Value {
        T::RESOURCE.to_document(identity, base)
    }
    fn matches(filter: &lockstep_scim::filter::Filter, (identity, _): &UserView) -> bool {
        T::RESOURCE.matches(filter, identity)
    }
}

fn view_response<R: IdentityResource>(
    status: StatusCode,
    view: &UserView,
    base: &str,
    projection: &Projection,
) -> Response {
    resource_response(status, R::render(view, base), R::SCHEMA, projection)
}

pub(crate) fn parse_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(FLAVOR, limit)
        } else {
            ApiError::bad_request(FLAVOR, e.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ScimProblem::bad(ScimType::InvalidSyntax, format!("request body is not valid JSON: {e}")).into()
    })
}

fn parse_id<R: IdentityResource>(id: &str) -> Result<IdentityId, ApiError> {
    id.parse().map_err(|_| not_found::<R>(id))
}

fn not_found<R: IdentityResource>(id: &str) -> ApiError {
    ApiError::new(FLAVOR, StatusCode::NOT_FOUND, None, format!("{} {id} not found", R::SCHEMA.name))
}

/// `If-Match`: `None` for absent or `*`; the version for `W/"n"` / `"n"`.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let value = value.to_str().unwrap_or("").trim();
    if value == "*" {
        return Ok(None);
    }
    value.trim_start_matches("W/").trim_matches('"').parse::<u64>().map(Some).map_err(|_| {
        ApiError::new(
            FLAVOR,
            StatusCode::PRECONDITION_FAILED,
            None,
            format!("If-Match {value:?} does not match the current version"),
        )
    })
}

pub(crate) fn origin(caller: &Caller) -> Origin {
    Origin { source: SourceId::new(SCIM_SOURCE), client: caller.principal.client_id(), source_ref: None }
}

pub(crate) fn engine_err(e: EngineError) -> ApiError {
    ApiError::from_engine(FLAVOR, e)
}

fn update_err(e: UpdateError<ScimProblem>) -> ApiError {
    match e {
        UpdateError::Rejected(p) => p.into(),
        UpdateError::Engine(e) => engine_err(e),
    }
}

/// `POST /Users`, `POST /Agents`.
pub(crate) async fn create<R: IdentityResource>(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let doc = parse_body(body, state.config.body_limit)?;
    let base = base_url(&state, &headers);
    let engine = state.engine.clone();
    let limits = state.config.scim_limits;
    // Mapping the document is pure work, and the write is awaited (queued
    // for the directory's worker): a create blocks no thread.
    let identity = R::from_document(&doc, engine.new_identity_id().map_err(engine_err)?, None, &limits)?;
    let applied = engine.create_identity_call(identity, origin(&caller)).await.map_err(engine_err)?;
    let view = (applied.identity, applied.groups);
    Ok(view_response::<R>(StatusCode::CREATED, &view, &base, &Projection::from_query(&params)))
}

/// The resource of this type with this id, with its groups.
fn load<R: IdentityResource>(
    engine: &Engine,
    identity_id: IdentityId,
    id: &str,
) -> Result<UserView, ApiError> {
    let query = IdentityQuery {
        filter: IdentityFilter::eq(IdentityField::Id, identity_id.to_string()),
        offset: 0,
        limit: 1,
    };
    let (_, mut found) =
        engine.directory().list_identities_with_groups(&query).map_err(|e| engine_err(e.into()))?;
    found.pop().filter(|(identity, _)| R::owns(identity)).ok_or_else(|| not_found::<R>(id))
}

/// `GET /Users/{id}`, `GET /Agents/{id}`.
pub(crate) async fn get_one<R: IdentityResource>(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let identity_id = parse_id::<R>(&id)?;
    let engine = state.engine.clone();
    let view = blocking(FLAVOR, move || load::<R>(&engine, identity_id, &id)).await?;
    Ok(view_response::<R>(
        StatusCode::OK,
        &view,
        &base_url(&state, &headers),
        &Projection::from_query(&params),
    ))
}

pub(crate) fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ScimProblem::bad(ScimType::InvalidValue, format!("{name} must be an integer, got {v:?}"))
                    .into()
            })
        })
        .transpose()
}

async fn list<R: IdentityResource>(
    state: &AppState,
    headers: &HeaderMap,
    list: ListParams,
    projection: Projection,
) -> Result<Response, ApiError> {
    let start = list.start_index.unwrap_or(1).max(1);
    let (total, resources) = list_values::<R>(state, headers, list, projection).await?;
    let body = serde_json::to_value(ListResponse::new(total, usize::try_from(start).unwrap_or(1), resources))
        .map_err(|e| ApiError::internal(FLAVOR, &e))?;
    Ok(scim_json(StatusCode::OK, &body, None))
}

/// A page of resources of one type, rendered and projected, and the total.
pub(crate) async fn list_values<R: IdentityResource>(
    state: &AppState,
    headers: &HeaderMap,
    list: ListParams,
    projection: Projection,
) -> Result<(usize, Vec<Value>), ApiError> {
    let plan = R::plan(&list)?;
    let base = base_url(state, headers);
    let engine = state.engine.clone();
    let (total, views) = blocking(FLAVOR, move || {
        let (total, candidates) = engine
            .directory()
            .list_identities_with_groups(&plan.identity_query())
            .map_err(|e| engine_err(e.into()))?;
        Ok(plan.finish(total, candidates, |view, f| R::matches(f, view))?)
    })
    .await?;
    let resources = views.iter().map(|view| projection.apply(R::SCHEMA, R::render(view, &base))).collect();
    Ok((total, resources))
}

fn no_sorting() -> ApiError {
    ScimProblem::bad(ScimType::InvalidValue, "sorting is not supported (see /ServiceProviderConfig)").into()
}

/// List parameters and projection of a `GET /{type}` query string.
pub(crate) fn list_request(params: &HashMap<String, String>) -> Result<(ListParams, Projection), ApiError> {
    if params.contains_key("sortBy") || params.contains_key("sortOrder") {
        return Err(no_sorting());
    }
    let list = ListParams {
        filter: params.get("filter").cloned(),
        start_index: number(params, "startIndex")?,
        count: number(params, "count")?,
    };
    Ok((list, Projection::from_query(params)))
}

/// List parameters and projection of a `POST /{type}/.search` body.
pub(crate) fn search_request(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<(ListParams, Projection), ApiError> {
    let request: SearchRequest = serde_json::from_value(parse_body(body, limit)?)
        .map_err(|e| ScimProblem::bad(ScimType::InvalidSyntax, format!("not a SearchRequest: {e}")))?;
    if !request.schemas.iter().any(|s| s.eq_ignore_ascii_case(SEARCH_SCHEMA)) {
        return Err(ScimProblem::bad(
            ScimType::InvalidSyntax,
            format!("schemas must contain {SEARCH_SCHEMA}"),
        )
        .into());
    }
    if request.sort_by.is_some() || request.sort_order.is_some() {
        return Err(no_sorting());
    }
    let projection = Projection::from_lists(request.attributes, request.excluded_attributes);
    let list = ListParams { filter: request.filter, start_index: request.start_index, count: request.count };
    Ok((list, projection))
}

/// `GET /Users?filter=…&startIndex=…&count=…&attributes=…`, and `/Agents`.
pub(crate) async fn list_resources<R: IdentityResource>(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let (list_params, projection) = list_request(&params)?;
    list::<R>(&state, &headers, list_params, projection).await
}

/// `POST /Users/.search`, `POST /Agents/.search` (RFC 7644 §3.4.3).
pub(crate) async fn search<R: IdentityResource>(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let (list_params, projection) = search_request(body, state.config.body_limit)?;
    list::<R>(&state, &headers, list_params, projection).await
}

/// `POST /.search` at the root (RFC 7644 §3.4.3): every resource type at
/// once — Users, Groups, Agents, AgenticApplications, in that order —
/// paged across them. A filter naming an
/// attribute one type lacks matches nothing of that type; a filter that
/// does not parse is `invalidFilter`.
pub(crate) async fn search_root(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let (params, projection) = search_request(body, state.config.body_limit)?;
    if let Some(f) = &params.filter {
        lockstep_scim::filter::parse(f)
            .map_err(|e| ApiError::from(ScimProblem::bad(ScimType::InvalidFilter, e.to_string())))?;
    }
    let start = usize::try_from(params.start_index.unwrap_or(1).max(1)).unwrap_or(1);
    let count = match params.count {
        Some(c) => usize::try_from(c.max(0)).unwrap_or(0),
        None => lockstep_scim::DEFAULT_COUNT,
    }
    .min(lockstep_scim::MAX_COUNT);
    let page = |start: usize, count: usize| ListParams {
        filter: params.filter.clone(),
        start_index: Some(i64::try_from(start).unwrap_or(i64::MAX)),
        count: Some(i64::try_from(count).unwrap_or(i64::MAX)),
    };
    // A type whose attributes the filter does not name has nothing to add.
    let tolerate = |r: Result<(usize, Vec<Value>), ApiError>| match r {
        Err(e) if e.code == Some(ScimType::InvalidFilter.as_str()) => Ok((0, Vec::new())),
        other => other,
    };
    let totals = [
        tolerate(list_values::<Users>(&state, &headers, page(1, 0), projection.clone()).await)?.0,
        tolerate(crate::groups::list_values(&state, &headers, page(1, 0), projection.clone()).await)?.0,
        tolerate(list_values::<Agents>(&state, &headers, page(1, 0), projection.clone()).await)?.0,
        tolerate(list_values::<AgenticApplications>(&state, &headers, page(1, 0), projection.clone()).await)?
            .0,
    ];
    // One page across the types in order: skip whole types before the
    // start, then take from each until the page is full.
    let mut resources = Vec::new();
    let mut skip = start - 1;
    for (i, total) in totals.iter().enumerate() {
        if resources.len() >= count {
            break;
        }
        if skip >= *total {
            skip -= total;
            continue;
        }
        let want = page(skip + 1, count - resources.len());
        let projection = projection.clone();
        let (_, got) = tolerate(match i {
            0 => list_values::<Users>(&state, &headers, want, projection).await,
            1 => crate::groups::list_values(&state, &headers, want, projection).await,
            2 => list_values::<Agents>(&state, &headers, want, projection).await,
            _ => list_values::<AgenticApplications>(&state, &headers, want, projection).await,
        })?;
        resources.extend(got);
        skip = 0;
    }
    let body = serde_json::to_value(ListResponse::new(totals.iter().sum(), start, resources))
        .map_err(|e| ApiError::internal(FLAVOR, &e))?;
    Ok(scim_json(StatusCode::OK, &body, None))
}

/// `PUT /Users/{id}`, `PUT /Agents/{id}`: full replace.
pub(crate) async fn replace<R: IdentityResource>(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let identity_id = parse_id::<R>(&id)?;
    let expected = if_match(&headers)?;
    let doc = parse_body(body, state.config.body_limit)?;
    let base = base_url(&state, &headers);
    let engine = state.engine.clone();
    let limits = state.config.scim_limits;
    let applied = update::<R>(&engine, identity_id, &id, origin(&caller), expected, move |current| {
        R::from_document(&doc, current.id, Some(current), &limits)
    })
    .await?;
    Ok(view_response::<R>(StatusCode::OK, &applied, &base, &Projection::from_query(&params)))
}

/// `PATCH /Users/{id}`, `PATCH /Agents/{id}`: answers 200 with the resource.
pub(crate) async fn patch<R: IdentityResource>(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let identity_id = parse_id::<R>(&id)?;
    let expected = if_match(&headers)?;
    let request: PatchRequest = serde_json::from_value(parse_body(body, state.config.body_limit)?)
        .map_err(|e| ScimProblem::bad(ScimType::InvalidSyntax, format!("not a PatchOp request: {e}")))?;
    let base = base_url(&state, &headers);
    let engine = state.engine.clone();
    let limits = state.config.scim_limits;
    let applied = update::<R>(&engine, identity_id, &id, origin(&caller), expected, move |current| {
        R::patch(current, &request, &limits)
    })
    .await?;
    Ok(view_response::<R>(StatusCode::OK, &applied, &base, &Projection::from_query(&params)))
}

/// A change to a resource of type `R`; one of another type is not found
/// (checked on the current identity inside the update, so a write costs no
/// extra read).
///
/// Awaited, not run on a blocking thread: the write is queued for the
/// directory's worker, which reads the identity, runs the change and
/// answers with the identity and its groups as written, so a write blocks
/// no thread and reads nothing through a reader.
async fn update<R: IdentityResource>(
    engine: &Engine,
    identity_id: IdentityId,
    id: &str,
    origin: Origin,
    expected: Option<u64>,
    change: impl Fn(&Identity) -> Result<Identity, ScimProblem> + Send + 'static,
) -> Result<UserView, ApiError> {
    let missing = format!("{} {id} not found", R::SCHEMA.name);
    let change = move |current: &Identity| {
        if !R::owns(current) {
            return Err(ScimProblem { status: 404, scim_type: None, detail: missing.clone() });
        }
        change(current)
    };
    match engine.update_identity_call(identity_id, origin, expected, change).await {
        Ok(applied) => Ok((applied.identity, applied.groups)),
        Err(UpdateError::Engine(EngineError::NotFound(_))) => Err(not_found::<R>(id)),
        Err(e) => Err(update_err(e)),
    }
}

/// `DELETE /Users/{id}`, `DELETE /Agents/{id}`: 204; every session and
/// credential of the identity is revoked first.
pub(crate) async fn delete<R: IdentityResource>(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Scim)?;
    let identity_id = parse_id::<R>(&id)?;
    let expected = if_match(&headers)?;
    // Another type's identity is not found, checked on the identity the
    // deletion reads (the write is awaited, as in `update`).
    let owned = |current: &Identity| if R::owns(current) { Ok(()) } else { Err(()) };
    match state.engine.delete_identity_call(identity_id, origin(&caller), expected, owned).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(UpdateError::Engine(EngineError::NotFound(_)) | UpdateError::Rejected(())) => {
            Err(not_found::<R>(&id))
        }
        Err(UpdateError::Engine(e)) => Err(engine_err(e)),
    }
}

// ---- discovery ---------------------------------------------------------------

pub(crate) fn list_of(resources: Vec<Value>) -> Result<Response, ApiError> {
    let n = resources.len();
    let body = serde_json::to_value(ListResponse::new(n, 1, resources))
        .map_err(|e| ApiError::internal(FLAVOR, &e))?;
    Ok(scim_json(StatusCode::OK, &body, None))
}

/// `GET /ServiceProviderConfig`.
pub(crate) async fn service_provider_config(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let doc = discovery::service_provider_config(
        &base_url(&state, &headers),
        state.config.body_limit,
        state.config.advertise_agent_extension,
    );
    Ok(scim_json(StatusCode::OK, &doc, None))
}

/// `GET /ResourceTypes`.
pub(crate) async fn resource_types(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    list_of(discovery::resource_types(&base_url(&state, &headers)))
}

/// `GET /ResourceTypes/{id}`.
pub(crate) async fn resource_type(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    found(discovery::resource_type_by_id(&base_url(&state, &headers), &id), "ResourceType", &id)
}

/// `GET /Schemas`.
pub(crate) async fn schemas(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    list_of(discovery::schemas(&base_url(&state, &headers)))
}

/// `GET /Schemas/{id}`.
pub(crate) async fn schema(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    found(discovery::schema_by_id(&base_url(&state, &headers), &id), "Schema", &id)
}

fn found(doc: Option<Value>, what: &str, id: &str) -> Result<Response, ApiError> {
    match doc {
        Some(doc) => Ok(scim_json(StatusCode::OK, &doc, None)),
        None => Err(ApiError::new(FLAVOR, StatusCode::NOT_FOUND, None, format!("{what} {id} not found"))),
    }
}

/// Any write to a discovery endpoint: 405 (RFC 7644 §4).
pub(crate) async fn read_only_endpoint() -> ApiError {
    ApiError::new(FLAVOR, StatusCode::METHOD_NOT_ALLOWED, None, "discovery endpoints are read-only")
}
