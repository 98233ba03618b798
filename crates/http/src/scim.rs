//! SCIM 2.0 `/Users` endpoints.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lockstep_domain::{Identity, IdentityId, Origin, Scope, SourceId};
use lockstep_engine::{Engine, EngineError, UpdateError};
use lockstep_proto::scim::{ListResponse, PatchRequest, SCIM_MEDIA_TYPE, SEARCH_SCHEMA, SearchRequest};
use lockstep_scim::{
    ListParams, ResourceSchema, ScimProblem, ScimType, USER, discovery, list_query, project,
    user_from_document, user_matches, user_to_document,
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

fn with_groups(engine: &Engine, identity: Identity) -> Result<UserView, ApiError> {
    let groups = engine.directory().groups_of(identity.id).map_err(|e| engine_err(e.into()))?;
    Ok((identity, groups))
}

fn user_response(
    status: StatusCode,
    (identity, groups): &UserView,
    base: &str,
    projection: &Projection,
) -> Response {
    resource_response(status, user_to_document(identity, groups, base), &USER, projection)
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

fn parse_id(id: &str) -> Result<IdentityId, ApiError> {
    id.parse().map_err(|_| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(FLAVOR, StatusCode::NOT_FOUND, None, format!("User {id} not found"))
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

/// `POST /Users`.
pub(crate) async fn create_user(
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
    let applied = blocking(FLAVOR, move || {
        let identity =
            user_from_document(&doc, engine.new_identity_id().map_err(engine_err)?, None, &limits)?;
        let applied = engine.create_identity(identity, origin(&caller)).map_err(engine_err)?;
        Ok((applied.identity, Vec::new()))
    })
    .await?;
    Ok(user_response(StatusCode::CREATED, &applied, &base, &Projection::from_query(&params)))
}

/// `GET /Users/{id}`.
pub(crate) async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let identity_id = parse_id(&id)?;
    let engine = state.engine.clone();
    let query = IdentityQuery {
        filter: IdentityFilter::eq(IdentityField::Id, identity_id.to_string()),
        offset: 0,
        limit: 1,
    };
    let identity = blocking(FLAVOR, move || {
        let (_, mut found) =
            engine.directory().list_identities_with_groups(&query).map_err(|e| engine_err(e.into()))?;
        found.pop().ok_or_else(|| not_found(&id))
    })
    .await?;
    Ok(user_response(
        StatusCode::OK,
        &identity,
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

async fn list(
    state: &AppState,
    headers: &HeaderMap,
    list: ListParams,
    projection: Projection,
) -> Result<Response, ApiError> {
    let start = list.start_index.unwrap_or(1).max(1);
    let (total, resources) = list_values(state, headers, list, projection).await?;
    let body = serde_json::to_value(ListResponse::new(total, usize::try_from(start).unwrap_or(1), resources))
        .map_err(|e| ApiError::internal(FLAVOR, &e))?;
    Ok(scim_json(StatusCode::OK, &body, None))
}

/// A page of Users, rendered and projected, and the total.
pub(crate) async fn list_values(
    state: &AppState,
    headers: &HeaderMap,
    list: ListParams,
    projection: Projection,
) -> Result<(usize, Vec<Value>), ApiError> {
    let plan = list_query(&list)?;
    let base = base_url(state, headers);
    let engine = state.engine.clone();
    let (total, views) = blocking(FLAVOR, move || {
        let (total, candidates) = engine
            .directory()
            .list_identities_with_groups(&plan.identity_query())
            .map_err(|e| engine_err(e.into()))?;
        Ok(plan.finish(total, candidates, |(identity, groups), f| user_matches(f, identity, groups))?)
    })
    .await?;
    let resources =
        views.iter().map(|(i, g)| projection.apply(&USER, user_to_document(i, g, &base))).collect();
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

/// `GET /Users?filter=…&startIndex=…&count=…&attributes=…`.
pub(crate) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let (list_params, projection) = list_request(&params)?;
    list(&state, &headers, list_params, projection).await
}

/// `POST /Users/.search` (RFC 7644 §3.4.3).
pub(crate) async fn search_users(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let (list_params, projection) = search_request(body, state.config.body_limit)?;
    list(&state, &headers, list_params, projection).await
}

/// `POST /.search` at the root (RFC 7644 §3.4.3): every resource type at
/// once — Users, then Groups — paged across both. A filter naming an
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
    let (users_total, _) = tolerate(list_values(&state, &headers, page(1, 0), projection.clone()).await)?;
    let (groups_total, _) =
        tolerate(crate::groups::list_values(&state, &headers, page(1, 0), projection.clone()).await)?;
    let mut resources = Vec::new();
    if count > 0 && start <= users_total {
        let (_, users) =
            tolerate(list_values(&state, &headers, page(start, count), projection.clone()).await)?;
        resources.extend(users);
    }
    let left = count.saturating_sub(resources.len());
    if left > 0 && start + resources.len() > users_total {
        let group_start = (start + resources.len()).saturating_sub(users_total).max(1);
        let (_, groups) = tolerate(
            crate::groups::list_values(&state, &headers, page(group_start, left), projection).await,
        )?;
        resources.extend(groups);
    }
    let body = serde_json::to_value(ListResponse::new(users_total + groups_total, start, resources))
        .map_err(|e| ApiError::internal(FLAVOR, &e))?;
    Ok(scim_json(StatusCode::OK, &body, None))
}

/// `PUT /Users/{id}`: full replace.
pub(crate) async fn replace_user(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let identity_id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    let doc = parse_body(body, state.config.body_limit)?;
    let base = base_url(&state, &headers);
    let engine = state.engine.clone();
    let limits = state.config.scim_limits;
    let applied = blocking(FLAVOR, move || {
        update(&engine, identity_id, &id, origin(&caller), expected, move |current| {
            user_from_document(&doc, current.id, Some(current), &limits)
        })
    })
    .await?;
    Ok(user_response(StatusCode::OK, &applied, &base, &Projection::from_query(&params)))
}

/// `PATCH /Users/{id}`: answers 200 with the resource.
pub(crate) async fn patch_user(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let identity_id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    let request: PatchRequest = serde_json::from_value(parse_body(body, state.config.body_limit)?)
        .map_err(|e| ScimProblem::bad(ScimType::InvalidSyntax, format!("not a PatchOp request: {e}")))?;
    let base = base_url(&state, &headers);
    let engine = state.engine.clone();
    let limits = state.config.scim_limits;
    let applied = blocking(FLAVOR, move || {
        update(&engine, identity_id, &id, origin(&caller), expected, move |current| {
            lockstep_scim::patch_user(current, &request, &limits)
        })
    })
    .await?;
    Ok(user_response(StatusCode::OK, &applied, &base, &Projection::from_query(&params)))
}

fn update(
    engine: &Engine,
    identity_id: IdentityId,
    id: &str,
    origin: Origin,
    expected: Option<u64>,
    change: impl Fn(&Identity) -> Result<Identity, ScimProblem> + Send + 'static,
) -> Result<UserView, ApiError> {
    match engine.update_identity(identity_id, origin, expected, change) {
        Ok(applied) => with_groups(engine, applied.identity),
        Err(UpdateError::Engine(EngineError::NotFound(_))) => Err(not_found(id)),
        Err(e) => Err(update_err(e)),
    }
}

/// `DELETE /Users/{id}`: 204; every session of the user is revoked first.
pub(crate) async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Scim)?;
    let identity_id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    let engine = state.engine.clone();
    blocking(FLAVOR, move || match engine.delete_identity(identity_id, origin(&caller), expected) {
        Ok(_) => Ok(()),
        Err(EngineError::NotFound(_)) => Err(not_found(&id)),
        Err(e) => Err(engine_err(e)),
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
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
    let doc = discovery::service_provider_config(&base_url(&state, &headers), state.config.body_limit);
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
