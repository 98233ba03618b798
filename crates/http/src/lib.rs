//! HTTP: the axum routers for SCIM, OAuth (token, introspection,
//! revocation, global revocation, discovery), the admin API, metrics and
//! health.
//!
//! Handlers parse and authorise, then hand the work to the engine on a
//! blocking thread (store calls block). Introspection is the exception: it
//! is answered from the engine's memory on the async thread, with no lock
//! held across an `.await`.

mod api;
mod auth;
mod credentials;
mod error;
mod groups;
mod oauth;
mod ops;
mod reject;
mod scim;
mod server;
mod sources;
mod ssf;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::routing::{MethodRouter, delete, get, post};
use lockstep_domain::Scope;
use lockstep_engine::Engine;
use tower_http::trace::TraceLayer;

pub use auth::{Caller, Presented, parse_authorization};
pub use error::{ApiError, Flavor};
pub use server::run;
pub use token::KeySigner;

/// Default request body limit (also advertised as SCIM `maxPayloadSize`).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Shared Signals delivery runs below the serving threads by default: on a
/// machine it shares with the server, signing and POSTing SETs then takes
/// only the CPU that serving leaves (see `server::run`).
pub const DEFAULT_DELIVERY_NICE: i32 = 19;

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
    /// Whether `/ServiceProviderConfig` carries `agentExtension` (the agent
    /// drafts' flag; `[scim] advertise_agent_extension`).
    pub advertise_agent_extension: bool,
    /// Upstream Shared Signals transmitters (`[[source]] kind = "ssf"`),
    /// each pushing to `/ssf/receive/{source}`.
    pub receivers: Vec<Arc<lockstep_ssf::Inbound>>,
    /// Nice value of the Shared Signals delivery thread (`[ssf]
    /// delivery_nice`, 0–19; 0 leaves it at the server's priority).
    pub delivery_nice: i32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            public_url: None,
            scim_limits: lockstep_scim::Limits::default(),
            advertise_agent_extension: true,
            receivers: Vec::new(),
            delivery_nice: DEFAULT_DELIVERY_NICE,
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
    /// The signing keys, published at `/.well-known/jwks.json` (`None`:
    /// an empty set; only opaque tokens are issued).
    pub keys: Option<Arc<lockstep_jose::SharedKeys>>,
}

/// Runs blocking engine work off the reactor and flattens the join error.
pub(crate) async fn blocking<T, F>(flavor: Flavor, f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(flavor, &e))?
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential needed (health, discovery of what is public).
    Anyone,
    /// The admin token only.
    Admin,
    /// The admin token, or a client holding any of these scopes.
    Scopes(&'static [Scope]),
    /// The token endpoint: `refresh_token` as [`Access::Scopes`] with
    /// `sessions`; `client_credentials` with a non-human identity's client
    /// secret (which is not a Lockstep credential and holds no scope).
    TokenEndpoint,
    /// An upstream Shared Signals transmitter's push token (configured per
    /// source, from the environment); no Lockstep credential works.
    PushToken,
}

/// The authorization matrix: every (method, route) served and who may call
/// it. Handlers enforce it; `tests/http/authz.rs` checks every row with every
/// kind of credential, and fails for a served route that has no row here.
pub const ACCESS: &[(&str, &str, Access)] = &[
    ("GET", "/scim/v2/Users", Access::Scopes(&[Scope::Scim])),
    ("POST", "/scim/v2/Users", Access::Scopes(&[Scope::Scim])),
    ("POST", "/scim/v2/Users/.search", Access::Scopes(&[Scope::Scim])),
    ("GET", "/scim/v2/Users/{id}", Access::Scopes(&[Scope::Scim])),
    ("PUT", "/scim/v2/Users/{id}", Access::Scopes(&[Scope::Scim])),
    ("PATCH", "/scim/v2/Users/{id}", Access::Scopes(&[Scope::Scim])),
    ("DELETE", "/scim/v2/Users/{id}", Access::Scopes(&[Scope::Scim])),
    ("GET", "/scim/v2/Agents", Access::Scopes(&[Scope::Scim])),
    ("POST", "/scim/v2/Agents", Access::Scopes(&[Scope::Scim])),
    ("POST", "/scim/v2/Agents/.search", Access::Scopes(&[Scope::Scim])),
    ("GET", "/scim/v2/Agents/{id}", Access::Scopes(&[Scope::Scim])),
    ("PUT", "/scim/v2/Agents/{id}", Access::Scopes(&[Scope::Scim])),
    ("PATCH", "/scim/v2/Agents/{id}", Access::Scopes(&[Scope::Scim])),
    ("DELETE", "/scim/v2/Agents/{id}", Access::Scopes(&[Scope::Scim])),
    ("GET", "/scim/v2/AgenticApplications", Access::Scopes(&[Scope::Scim])),
    ("POST", "/scim/v2/AgenticApplications", Access::Scopes(&[Scope::Scim])),
    ("POST", "/scim/v2/AgenticApplications/.search", Access::Scopes(&[Scope::Scim])),
    ("GET", "/scim/v2/AgenticApplications/{id}", Access::Scopes(&[Scope::Scim])),
    ("PUT", "/scim/v2/AgenticApplications/{id}", Access::Scopes(&[Scope::Scim])),
    ("PATCH", "/scim/v2/AgenticApplications/{id}", Access::Scopes(&[Scope::Scim])),
    ("DELETE", "/scim/v2/AgenticApplications/{id}", Access::Scopes(&[Scope::Scim])),
    ("POST", "/scim/v2/.search", Access::Scopes(&[Scope::Scim])),
    ("GET", "/scim/v2/Groups", Access::Scopes(&[Scope::Scim])),
    ("POST", "/scim/v2/Groups", Access::Scopes(&[Scope::Scim])),
    ("POST", "/scim/v2/Groups/.search", Access::Scopes(&[Scope::Scim])),
    ("GET", "/scim/v2/Groups/{id}", Access::Scopes(&[Scope::Scim])),
    ("PUT", "/scim/v2/Groups/{id}", Access::Scopes(&[Scope::Scim])),
    ("PATCH", "/scim/v2/Groups/{id}", Access::Scopes(&[Scope::Scim])),
    ("DELETE", "/scim/v2/Groups/{id}", Access::Scopes(&[Scope::Scim])),
    ("GET", "/scim/v2/ServiceProviderConfig", Access::Scopes(&[Scope::Scim])),
    ("GET", "/scim/v2/ResourceTypes", Access::Scopes(&[Scope::Scim])),
    ("GET", "/scim/v2/ResourceTypes/{id}", Access::Scopes(&[Scope::Scim])),
    ("GET", "/scim/v2/Schemas", Access::Scopes(&[Scope::Scim])),
    ("GET", "/scim/v2/Schemas/{id}", Access::Scopes(&[Scope::Scim])),
    ("POST", "/v1/sessions", Access::Scopes(&[Scope::Sessions])),
    ("GET", "/v1/sessions", Access::Scopes(&[Scope::Sessions])),
    ("DELETE", "/v1/sessions/{id}", Access::Scopes(&[Scope::Sessions])),
    ("POST", "/v1/identities/{id}/credentials", Access::Scopes(&[Scope::Sessions])),
    ("GET", "/v1/identities/{id}/credentials", Access::Scopes(&[Scope::Sessions])),
    ("DELETE", "/v1/identities/{id}/credentials/{credential_id}", Access::Scopes(&[Scope::Sessions])),
    ("POST", "/v1/identities/{id}/credentials/{credential_id}/rotate", Access::Scopes(&[Scope::Sessions])),
    ("POST", "/v1/identities/{id}/revoke-all", Access::Scopes(&[Scope::Sessions])),
    ("POST", "/v1/clients", Access::Admin),
    ("GET", "/v1/clients", Access::Admin),
    ("GET", "/v1/audit", Access::Scopes(&[Scope::Audit])),
    ("GET", "/v1/sources", Access::Scopes(&[Scope::Audit])),
    ("POST", "/v1/sources/{name}/import", Access::Scopes(&[Scope::Scim])),
    ("POST", "/v1/sources/{name}/approve", Access::Scopes(&[Scope::Scim])),
    ("POST", "/v1/check", Access::Scopes(&[Scope::Introspect])),
    ("GET", "/v1/directory-events/{position}/reach", Access::Scopes(&[Scope::Audit])),
    ("POST", "/oauth2/introspect", Access::Scopes(&[Scope::Introspect])),
    ("POST", "/oauth2/revoke", Access::Scopes(&[Scope::Introspect, Scope::Sessions])),
    ("POST", "/oauth2/token", Access::TokenEndpoint),
    ("POST", "/oauth2/global-token-revocation", Access::Scopes(&[Scope::Sessions])),
    ("GET", "/.well-known/oauth-authorization-server", Access::Anyone),
    ("GET", "/.well-known/jwks.json", Access::Anyone),
    ("GET", "/.well-known/ssf-configuration", Access::Anyone),
    ("GET", "/statuslists/1", Access::Anyone),
    ("POST", "/ssf/streams", Access::Scopes(&[Scope::Ssf])),
    ("GET", "/ssf/streams", Access::Scopes(&[Scope::Ssf])),
    ("PATCH", "/ssf/streams", Access::Scopes(&[Scope::Ssf])),
    ("PUT", "/ssf/streams", Access::Scopes(&[Scope::Ssf])),
    ("DELETE", "/ssf/streams", Access::Scopes(&[Scope::Ssf])),
    ("GET", "/ssf/status", Access::Scopes(&[Scope::Ssf])),
    ("POST", "/ssf/status", Access::Scopes(&[Scope::Ssf])),
    ("POST", "/ssf/subjects:add", Access::Scopes(&[Scope::Ssf])),
    ("POST", "/ssf/subjects:remove", Access::Scopes(&[Scope::Ssf])),
    ("POST", "/ssf/verify", Access::Scopes(&[Scope::Ssf])),
    ("POST", "/ssf/poll/{stream_id}", Access::Scopes(&[Scope::Ssf])),
    ("POST", "/ssf/receive/{source}", Access::PushToken),
    ("GET", "/metrics", Access::Scopes(&[Scope::Audit])),
    ("GET", "/healthz", Access::Anyone),
];

/// Every route and its handlers; [`router`] is built from exactly this list.
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/scim/v2/Users", get(scim::list_resources::<scim::Users>).post(scim::create::<scim::Users>)),
        ("/scim/v2/Users/.search", post(scim::search::<scim::Users>)),
        ("/scim/v2/Agents", get(scim::list_resources::<scim::Agents>).post(scim::create::<scim::Agents>)),
        ("/scim/v2/Agents/.search", post(scim::search::<scim::Agents>)),
        (
            "/scim/v2/AgenticApplications",
            get(scim::list_resources::<scim::AgenticApplications>)
                .post(scim::create::<scim::AgenticApplications>),
        ),
        ("/scim/v2/AgenticApplications/.search", post(scim::search::<scim::AgenticApplications>)),
        ("/scim/v2/.search", post(scim::search_root)),
        ("/scim/v2/Groups", get(groups::list_groups).post(groups::create_group)),
        ("/scim/v2/Groups/.search", post(groups::search_groups)),
        (
            "/scim/v2/Groups/{id}",
            get(groups::get_group)
                .put(groups::replace_group)
                .patch(groups::patch_group)
                .delete(groups::delete_group),
        ),
        (
            "/scim/v2/ServiceProviderConfig",
            get(scim::service_provider_config).fallback(scim::read_only_endpoint),
        ),
        ("/scim/v2/ResourceTypes", get(scim::resource_types).fallback(scim::read_only_endpoint)),
        ("/scim/v2/ResourceTypes/{id}", get(scim::resource_type).fallback(scim::read_only_endpoint)),
        ("/scim/v2/Schemas", get(scim::schemas).fallback(scim::read_only_endpoint)),
        ("/scim/v2/Schemas/{id}", get(scim::schema).fallback(scim::read_only_endpoint)),
        (
            "/scim/v2/Users/{id}",
            get(scim::get_one::<scim::Users>)
                .put(scim::replace::<scim::Users>)
                .patch(scim::patch::<scim::Users>)
                .delete(scim::delete::<scim::Users>),
        ),
        (
            "/scim/v2/Agents/{id}",
            get(scim::get_one::<scim::Agents>)
                .put(scim::replace::<scim::Agents>)
                .patch(scim::patch::<scim::Agents>)
                .delete(scim::delete::<scim::Agents>),
        ),
        (
            "/scim/v2/AgenticApplications/{id}",
            get(scim::get_one::<scim::AgenticApplications>)
                .put(scim::replace::<scim::AgenticApplications>)
                .patch(scim::patch::<scim::AgenticApplications>)
                .delete(scim::delete::<scim::AgenticApplications>),
        ),
        ("/v1/sessions", post(api::create_session).get(api::list_sessions)),
        ("/v1/sessions/{id}", delete(api::revoke_session)),
        ("/v1/identities/{id}/credentials", post(credentials::create).get(credentials::list)),
        ("/v1/identities/{id}/credentials/{credential_id}", delete(credentials::revoke)),
        ("/v1/identities/{id}/credentials/{credential_id}/rotate", post(credentials::rotate)),
        ("/v1/identities/{id}/revoke-all", post(credentials::revoke_all)),
        ("/v1/clients", post(api::create_client).get(api::list_clients)),
        ("/v1/audit", get(api::audit)),
        ("/v1/sources", get(sources::list)),
        (
            "/v1/sources/{name}/import",
            post(sources::import).layer(DefaultBodyLimit::max(sources::IMPORT_BODY_LIMIT)),
        ),
        ("/v1/sources/{name}/approve", post(sources::approve)),
        ("/v1/check", post(api::check)),
        ("/v1/directory-events/{position}/reach", get(api::reach)),
        ("/oauth2/introspect", post(oauth::introspect)),
        ("/oauth2/revoke", post(oauth::revoke)),
        ("/oauth2/token", post(token::token)),
        ("/oauth2/global-token-revocation", post(token::global_revocation)),
        ("/.well-known/oauth-authorization-server", get(token::metadata)),
        ("/.well-known/jwks.json", get(token::jwks)),
        ("/.well-known/ssf-configuration", get(ssf::configuration)),
        ("/statuslists/1", get(token::status_list)),
        (
            "/ssf/streams",
            post(ssf::create_stream)
                .get(ssf::get_streams)
                .patch(ssf::update_stream)
                .put(ssf::update_stream)
                .delete(ssf::delete_stream),
        ),
        ("/ssf/status", get(ssf::get_status).post(ssf::set_status)),
        ("/ssf/subjects:add", post(ssf::add_subject)),
        ("/ssf/subjects:remove", post(ssf::remove_subject)),
        ("/ssf/verify", post(ssf::verify)),
        ("/ssf/poll/{stream_id}", post(ssf::poll)),
        ("/ssf/receive/{source}", post(ssf::receive)),
        ("/metrics", get(ops::metrics)),
        ("/healthz", get(ops::health)),
    ]
}

/// The complete Lockstep router.
pub fn router(state: AppState) -> Router {
    let limit = state.config.body_limit;
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| router.route(path, handlers))
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
