//! HTTP: the axum routers for SCIM, OAuth introspection and revocation, the
//! admin API, metrics and health.
//!
//! Handlers parse and authorise, then hand the work to the engine on a
//! blocking thread (store calls block). Introspection is the exception: it
//! is answered from the engine's memory on the async thread, with no lock
//! held across an `.await`.

mod api;
mod auth;
mod error;
mod groups;
mod oauth;
mod ops;
mod reject;
mod scim;
mod server;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::routing::{delete, get, post};
use lockstep_engine::Engine;
use tower_http::trace::TraceLayer;

pub use auth::Caller;
pub use error::{ApiError, Flavor};
pub use server::run;

/// Default request body limit (also advertised as SCIM `maxPayloadSize`).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Public base URL (e.g. `https://lockstep.example.com`), used in SCIM
    /// `meta.location`; when unset, derived from the request's `Host`.
    pub public_url: Option<String>,
    /// Size limits on SCIM documents below the body limit.
    pub scim_limits: lockstep_scim::Limits,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            public_url: None,
            scim_limits: lockstep_scim::Limits::default(),
        }
    }
}

/// Shared handler state.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Settings.
    pub config: Arc<HttpConfig>,
}

/// Runs blocking engine work off the reactor and flattens the join error.
pub(crate) async fn blocking<T, F>(flavor: Flavor, f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(flavor, &e))?
}

/// The complete Lockstep router.
pub fn router(state: AppState) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route("/scim/v2/Users", get(scim::list_users).post(scim::create_user))
        .route("/scim/v2/Users/.search", post(scim::search_users))
        .route("/scim/v2/.search", post(scim::search_root))
        .route("/scim/v2/Groups", get(groups::list_groups).post(groups::create_group))
        .route("/scim/v2/Groups/.search", post(groups::search_groups))
        .route(
            "/scim/v2/Groups/{id}",
            get(groups::get_group)
                .put(groups::replace_group)
                .patch(groups::patch_group)
                .delete(groups::delete_group),
        )
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(scim::service_provider_config).fallback(scim::read_only_endpoint),
        )
        .route("/scim/v2/ResourceTypes", get(scim::resource_types).fallback(scim::read_only_endpoint))
        .route("/scim/v2/ResourceTypes/{id}", get(scim::resource_type).fallback(scim::read_only_endpoint))
        .route("/scim/v2/Schemas", get(scim::schemas).fallback(scim::read_only_endpoint))
        .route("/scim/v2/Schemas/{id}", get(scim::schema).fallback(scim::read_only_endpoint))
        .route(
            "/scim/v2/Users/{id}",
            get(scim::get_user).put(scim::replace_user).patch(scim::patch_user).delete(scim::delete_user),
        )
        .route("/v1/sessions", post(api::create_session).get(api::list_sessions))
        .route("/v1/sessions/{id}", delete(api::revoke_session))
        .route("/v1/clients", post(api::create_client).get(api::list_clients))
        .route("/v1/audit", get(api::audit))
        .route("/v1/check", post(api::check))
        .route("/v1/directory-events/{position}/reach", get(api::reach))
        .route("/oauth2/introspect", post(oauth::introspect))
        .route("/oauth2/revoke", post(oauth::revoke))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(reject::protocol_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    let flavor = Flavor::for_path(uri.path());
    ApiError::new(
        flavor,
        axum::http::StatusCode::NOT_FOUND,
        (flavor != Flavor::Scim).then_some("not_found"),
        format!("no such endpoint: {}", uri.path()),
    )
}
