//! Newtypes for every identifier, so a session id can never be passed where
//! an identity id is expected.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an already generated UUID (generation needs a clock and
            /// randomness, so it lives outside this crate).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// An identity in the directory (human or non-human). Stable for life.
    IdentityId
);
uuid_id!(
    /// One session or credential held by the session authority.
    SessionId
);
uuid_id!(
    /// An API client of Lockstep itself (a SCIM provisioner, an API gateway).
    ClientId
);
uuid_id!(
    /// A group in the directory.
    GroupId
);
uuid_id!(
    /// A Shared Signals stream (SSF 1.0): one receiver's subscription.
    StreamId
);

/// Position of an event in the directory's ordered event log.
///
/// Strictly increasing; the bridge records the highest position it has
/// consumed, so replay after a crash resumes exactly where it stopped.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct DirectoryEventId(pub u64);

impl fmt::Display for DirectoryEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dir-{}", self.0)
    }
}

/// A directory source: `scim`, `ldap:corp`, `file:hr`, `admin`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SourceId(String);

impl SourceId {
    /// Names a source. Any non-empty string is a valid name.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The SCIM service provider: the source of everything written over
    /// SCIM (and the admin API).
    pub fn scim() -> Self {
        Self("scim".to_owned())
    }

    /// The source's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
