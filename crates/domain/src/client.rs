//! Lockstep's own API clients and what they may call.

use crate::directory::UnknownName;
use crate::{ClientId, Timestamp, TokenHash};

/// A permission an API client can hold.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Scope {
    /// Write and read the directory through SCIM.
    Scim,
    /// Open, list and revoke sessions.
    Sessions,
    /// Introspect and revoke tokens (RFC 7662 / RFC 7009).
    Introspect,
    /// Read the audit trail.
    Audit,
    /// Manage Shared Signals streams (SSF 1.0) and poll their events.
    Ssf,
}

impl Scope {
    /// Every scope.
    pub const ALL: &'static [Scope] =
        &[Scope::Scim, Scope::Sessions, Scope::Introspect, Scope::Audit, Scope::Ssf];

    /// Stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Scim => "scim",
            Scope::Sessions => "sessions",
            Scope::Introspect => "introspect",
            Scope::Audit => "audit",
            Scope::Ssf => "ssf",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .iter()
            .copied()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownName { what: "scope", got: s.to_owned() })
    }
}

/// An API client of Lockstep. Its secret is stored only as a hash.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ApiClient {
    /// Public identifier (the HTTP Basic user name).
    pub id: ClientId,
    /// Operator-chosen label, e.g. `okta-prod`.
    pub name: String,
    /// Hash of the client secret.
    pub secret_hash: TokenHash,
    /// What it may call, sorted and without duplicates.
    pub scopes: Vec<Scope>,
    /// When it was created.
    pub created: Timestamp,
}

impl ApiClient {
    /// Whether the client holds `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}
