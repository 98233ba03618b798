//! Who is calling: the admin, or an API client with scopes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use lockstep_domain::{Actor, ApiClient, ClientId, Scope, TokenHash};

use crate::{Engine, EngineError, EngineResult, secrets};

/// The kind of an authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// The admin token: may call everything.
    Admin,
    /// An API client.
    Client(ClientId),
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Admin or client.
    pub kind: PrincipalKind,
    /// Scopes held (every scope for the admin).
    pub scopes: Vec<Scope>,
    /// Display name for audit records.
    pub name: String,
}

impl Principal {
    /// The admin principal (also used by local CLI commands).
    pub fn admin() -> Self {
        Self { kind: PrincipalKind::Admin, scopes: Scope::ALL.to_vec(), name: "admin".into() }
    }

    /// Whether the caller may use `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.kind == PrincipalKind::Admin || self.scopes.contains(&scope)
    }

    /// The client id, if a client.
    pub fn client_id(&self) -> Option<ClientId> {
        match self.kind {
            PrincipalKind::Client(id) => Some(id),
            PrincipalKind::Admin => None,
        }
    }

    /// How audit records name this caller.
    pub fn actor(&self) -> Actor {
        match self.kind {
            PrincipalKind::Admin => Actor::Admin,
            PrincipalKind::Client(id) => Actor::Client(id),
        }
    }

    fn client(client: &ApiClient) -> Self {
        Self {
            kind: PrincipalKind::Client(client.id),
            scopes: client.scopes.clone(),
            name: client.name.clone(),
        }
    }
}

/// API clients and the admin token hash, in memory.
#[derive(Debug, Default)]
pub(crate) struct ClientTable {
    by_hash: HashMap<TokenHash, ApiClient>,
    by_id: HashMap<ClientId, ApiClient>,
    admin: Option<TokenHash>,
    /// The admin token came from configuration and is not stored.
    admin_pinned: bool,
}

impl Engine {
    pub(crate) fn reload_clients(&self) -> EngineResult<()> {
        let clients = self.stores.credentials.clients()?;
        let stored_admin = self.stores.credentials.admin_token_hash()?;
        let mut table = self.clients.write().unwrap_or_else(|p| p.into_inner());
        table.by_hash = clients.iter().map(|c| (c.secret_hash, c.clone())).collect();
        table.by_id = clients.into_iter().map(|c| (c.id, c)).collect();
        if !table.admin_pinned {
            table.admin = stored_admin;
        }
        Ok(())
    }

    pub(crate) fn remember_client(&self, client: ApiClient) {
        let mut table = self.clients.write().unwrap_or_else(|p| p.into_inner());
        table.by_hash.insert(client.secret_hash, client.clone());
        table.by_id.insert(client.id, client);
    }

    /// Sets up the admin credential. With `configured` (from
    /// `LOCKSTEP_ADMIN_TOKEN`) that token is the admin token and nothing is
    /// stored. Otherwise, on first start, a token is generated, its hash
    /// stored, and the token returned so the caller can show it once.
    pub fn ensure_admin_token(&self, configured: Option<&str>) -> EngineResult<Option<String>> {
        if let Some(token) = configured {
            if token.len() < 16 {
                return Err(EngineError::Invalid {
                    field: "LOCKSTEP_ADMIN_TOKEN",
                    message: "must be at least 16 characters".into(),
                });
            }
            let mut table = self.clients.write().unwrap_or_else(|p| p.into_inner());
            table.admin = Some(secrets::hash(token));
            table.admin_pinned = true;
            return Ok(None);
        }
        if self.stores.credentials.admin_token_hash()?.is_some() {
            return Ok(None);
        }
        self.rotate_admin_token().map(Some)
    }

    /// Generates and stores a new admin token, invalidating the old one.
    pub fn rotate_admin_token(&self) -> EngineResult<String> {
        let token = secrets::mint(secrets::ADMIN_TOKEN_PREFIX, self.clock.now(), self.entropy.as_ref())?;
        let hash = secrets::hash(&token);
        self.stores.credentials.set_admin_token_hash(hash)?;
        let mut table = self.clients.write().unwrap_or_else(|p| p.into_inner());
        if !table.admin_pinned {
            table.admin = Some(hash);
        }
        Ok(token)
    }

    /// Authenticates a bearer token: the admin token or a client secret.
    pub fn authenticate_bearer(&self, token: &str) -> Option<Principal> {
        let hash = secrets::hash(token);
        self.bearer_lookup(&hash).or_else(|| {
            self.reload_after_miss();
            self.bearer_lookup(&hash)
        })
    }

    fn bearer_lookup(&self, hash: &TokenHash) -> Option<Principal> {
        let table = self.clients.read().unwrap_or_else(|p| p.into_inner());
        if table.admin.is_some_and(|admin| secrets::same(&admin, hash)) {
            return Some(Principal::admin());
        }
        table.by_hash.get(hash).map(Principal::client)
    }

    /// Authenticates HTTP Basic `client_id:client_secret`.
    pub fn authenticate_basic(&self, client_id: &str, secret: &str) -> Option<Principal> {
        let id = client_id.parse::<ClientId>().ok()?;
        let hash = secrets::hash(secret);
        let lookup = || {
            let table = self.clients.read().unwrap_or_else(|p| p.into_inner());
            let client = table.by_id.get(&id)?;
            secrets::same(&client.secret_hash, &hash).then(|| Principal::client(client))
        };
        lookup().or_else(|| {
            self.reload_after_miss();
            lookup()
        })
    }

    /// Clients created by `lockstep clients create` while the server runs
    /// land in the store, not in this process's memory: on a failed
    /// authentication, re-read them, at most once per second so that bad
    /// credentials cannot turn into a stream of disk reads.
    fn reload_after_miss(&self) {
        let now = self.clock.now().micros();
        let last = self.last_client_reload.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1_000_000 {
            return;
        }
        let won = self.last_client_reload.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed);
        if won.is_err() {
            return;
        }
        if let Err(e) = self.reload_clients() {
            tracing::warn!(error = %e, "could not reload API clients");
        }
    }

    /// Every API client (without secrets; only hashes are held).
    pub fn clients(&self) -> Vec<ApiClient> {
        let table = self.clients.read().unwrap_or_else(|p| p.into_inner());
        let mut clients: Vec<ApiClient> = table.by_id.values().cloned().collect();
        clients.sort_by_key(|c| c.created);
        clients
    }
}
