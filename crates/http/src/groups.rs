//! SCIM 2.0 `/Groups` endpoints. Membership changes reach sessions as one
//! directory event per affected member, through the bridge.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use lockstep_domain::{Group, GroupId, Scope};
use lockstep_engine::{EngineError, UpdateError};
use lockstep_proto::scim::{ListResponse, PatchRequest};
use lockstep_scim::{
    GROUP, ListParams, ScimProblem, ScimType, apply_patch, group_from_document, group_list_query,
    group_to_document, group_to_document_named,
};
use serde_json::Value;

use crate::error::{ApiError, Flavor};
use crate::scim::{
    Projection, base_url, engine_err, if_match, list_request, origin, parse_body, resource_response,
    scim_json, search_request,
};
use crate::{AppState, Caller, blocking};

const FLAVOR: Flavor = Flavor::Scim;

fn parse_id(id: &str) -> Result<GroupId, ApiError> {
    id.parse().map_err(|_| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(FLAVOR, StatusCode::NOT_FOUND, None, format!("Group {id} not found"))
}

fn engine_or_not_found(e: EngineError, id: &str) -> ApiError {
    match e {
        EngineError::NotFound(_) => not_found(id),
        other => engine_err(other),
    }
}

fn update_err(e: UpdateError<ScimProblem>, id: &str) -> ApiError {
    match e {
        UpdateError::Rejected(p) => p.into(),
        UpdateError::Engine(e) => engine_or_not_found(e, id),
    }
}

/// The `userName` of each member, for `members[].display`.
fn member_names(
    engine: &lockstep_engine::Engine,
    groups: &[&Group],
) -> HashMap<lockstep_domain::IdentityId, String> {
    let mut names = HashMap::new();
    for group in groups {
        for m in &group.members {
            if !names.contains_key(m)
                && let Ok(Some(identity)) = engine.directory().identity(*m)
            {
                names.insert(*m, identity.user_name);
            }
        }
    }
    names
}

fn render(group: &Group, base: &str, names: &HashMap<lockstep_domain::IdentityId, String>) -> Value {
    group_to_document_named(group, base, &|m| names.get(&m).cloned())
}

async fn group_response(
    state: &AppState,
    status: StatusCode,
    group: &Group,
    base: &str,
    projection: &Projection,
) -> Result<Response, ApiError> {
    // `display` is returned on request only (`attributes=members.display`):
    // a client that did not ask gets back exactly the members it sent.
    let names = if projection.requests("members.display") {
        let engine = state.engine.clone();
        let owned = group.clone();
        blocking(FLAVOR, move || Ok(member_names(&engine, &[&owned]))).await?
    } else {
        HashMap::new()
    };
    Ok(resource_response(status, render(group, base, &names), &GROUP, projection))
}

/// `POST /Groups`.
pub(crate) async fn create_group(
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
        let group = group_from_document(&doc, engine.new_group_id().map_err(engine_err)?, None, &limits)?;
        engine.create_group(group, origin(&caller)).map_err(engine_err)
    })
    .await?;
    let group = applied.group.ok_or_else(|| ApiError::internal(FLAVOR, &"created group missing"))?;
    group_response(&state, StatusCode::CREATED, &group, &base, &Projection::from_query(&params)).await
}

/// `GET /Groups/{id}`.
pub(crate) async fn get_group(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let group_id = parse_id(&id)?;
    let engine = state.engine.clone();
    let group =
        blocking(FLAVOR, move || engine.group(group_id).map_err(|e| engine_or_not_found(e, &id))).await?;
    group_response(
        &state,
        StatusCode::OK,
        &group,
        &base_url(&state, &headers),
        &Projection::from_query(&params),
    )
    .await
}

async fn list(
    state: &AppState,
    headers: &HeaderMap,
    params: ListParams,
    projection: Projection,
) -> Result<Response, ApiError> {
    let start = usize::try_from(params.start_index.unwrap_or(1).max(1)).unwrap_or(1);
    let (total, resources) = list_values(state, headers, params, projection).await?;
    let body = serde_json::to_value(ListResponse::new(total, start, resources))
        .map_err(|e| ApiError::internal(FLAVOR, &e))?;
    Ok(scim_json(StatusCode::OK, &body, None))
}

/// A page of Groups, rendered and projected, and the total.
pub(crate) async fn list_values(
    state: &AppState,
    headers: &HeaderMap,
    params: ListParams,
    projection: Projection,
) -> Result<(usize, Vec<Value>), ApiError> {
    let plan = group_list_query(&params)?;
    let with_display = projection.requests("members.display");
    let base = base_url(state, headers);
    let engine = state.engine.clone();
    let (total, groups, names) = blocking(FLAVOR, move || {
        let page = engine.directory().list_groups(&plan.group_query()).map_err(|e| engine_err(e.into()))?;
        let (total, groups) = plan.finish(page.total, page.items, |g, f| {
            lockstep_scim::eval::matches(f, &group_to_document(g, ""))
        })?;
        let names = if with_display {
            member_names(&engine, &groups.iter().collect::<Vec<_>>())
        } else {
            HashMap::new()
        };
        Ok((total, groups, names))
    })
    .await?;
    let resources = groups.iter().map(|g| projection.apply(&GROUP, render(g, &base, &names))).collect();
    Ok((total, resources))
}

/// `GET /Groups?filter=…`.
pub(crate) async fn list_groups(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let (list_params, projection) = list_request(&params)?;
    list(&state, &headers, list_params, projection).await
}

/// `POST /Groups/.search`.
pub(crate) async fn search_groups(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let (list_params, projection) = search_request(body, state.config.body_limit)?;
    list(&state, &headers, list_params, projection).await
}

/// `PUT /Groups/{id}`: full replace, including the member list.
pub(crate) async fn replace_group(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let group_id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    let doc = parse_body(body, state.config.body_limit)?;
    let base = base_url(&state, &headers);
    let engine = state.engine.clone();
    let limits = state.config.scim_limits;
    // Okta renames a pushed group with a PUT that leaves `members` out; a
    // PUT without the attribute keeps the members (an empty list clears
    // them).
    let keeps_members = doc.as_object().is_some_and(|o| !o.keys().any(|k| k.eq_ignore_ascii_case("members")));
    let applied = blocking(FLAVOR, move || {
        engine
            .update_group(group_id, origin(&caller), expected, |current| {
                let mut group = group_from_document(&doc, current.id, Some(current), &limits)?;
                if keeps_members {
                    group.members.clone_from(&current.members);
                }
                Ok(group)
            })
            .map_err(|e| update_err(e, &id))
    })
    .await?;
    let group = applied.group.ok_or_else(|| ApiError::internal(FLAVOR, &"updated group missing"))?;
    group_response(&state, StatusCode::OK, &group, &base, &Projection::from_query(&params)).await
}

/// `PATCH /Groups/{id}`: answers 200 with the group.
pub(crate) async fn patch_group(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Scim)?;
    let group_id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    let request: PatchRequest = serde_json::from_value(parse_body(body, state.config.body_limit)?)
        .map_err(|e| ScimProblem::bad(ScimType::InvalidSyntax, format!("not a PatchOp request: {e}")))?;
    let base = base_url(&state, &headers);
    let base_for_patch = base.clone();
    let engine = state.engine.clone();
    let limits = state.config.scim_limits;
    let applied = blocking(FLAVOR, move || {
        engine
            .update_group(group_id, origin(&caller), expected, |current| {
                let Value::Object(mut doc) = group_to_document(current, &base_for_patch) else {
                    return Err(ScimProblem::bad(ScimType::InvalidSyntax, "stored group is not an object"));
                };
                apply_patch(&GROUP, &mut doc, &request)?;
                group_from_document(&Value::Object(doc), current.id, Some(current), &limits)
            })
            .map_err(|e| update_err(e, &id))
    })
    .await?;
    let group = applied.group.ok_or_else(|| ApiError::internal(FLAVOR, &"patched group missing"))?;
    group_response(&state, StatusCode::OK, &group, &base, &Projection::from_query(&params)).await
}

/// `DELETE /Groups/{id}`: 204; every member gets a membership event first.
pub(crate) async fn delete_group(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Scim)?;
    let group_id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    let engine = state.engine.clone();
    // A deletion that cuts many sessions is answered once the cut is in
    // force and its cause durable, before the session store has recorded
    // it (`lockstep_engine::EarlyAck` says why that is safe); anything
    // smaller, and every error, is answered when the write returns.
    let (cut, in_force) = tokio::sync::oneshot::channel();
    let ack = lockstep_engine::EarlyAck::at_least(lockstep_engine::EARLY_ACK_SESSIONS, move || {
        let _ = cut.send(());
    });
    let mut write = tokio::task::spawn_blocking(move || {
        engine
            .delete_group_acknowledged(group_id, origin(&caller), expected, Some(ack))
            .map(|_| ())
            .map_err(|e| engine_or_not_found(e, &id))
    });
    let joined = |r: Result<Result<(), ApiError>, tokio::task::JoinError>| {
        r.map_err(|e| ApiError::internal(FLAVOR, &e))?
    };
    tokio::select! {
        done = &mut write => joined(done)?,
        fired = in_force => match fired {
            Ok(()) => {
                // The rest of the write finishes on its own; a failure
                // there is logged, and the next writer replays it.
                tokio::spawn(async move {
                    if let Err(e) = joined(write.await) {
                        tracing::error!(error = ?e, "a group deletion failed after its cut was acknowledged; the next write replays its session impact");
                    }
                });
            }
            // Dropped unfired: the write is answered when it returns.
            Err(_) => joined(write.await)?,
        },
    }
    Ok(StatusCode::NO_CONTENT)
}
