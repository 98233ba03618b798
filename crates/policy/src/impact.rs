//! Impacts and the changes they answer.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What a rule does to every live session of the identity an event
/// concerns. Ordered from least to most strict (see [`Impact::strictness`]):
/// where an identity is in two tiers, the stricter impact wins.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Impact {
    /// Leave sessions alone.
    None,
    /// The session stays; its claims follow the directory and the change is
    /// recorded against it (`session.marked_for_recheck`).
    Recheck,
    /// Bring the expiry forward to at most the event time plus this; never
    /// extends.
    Shorten(Duration),
    /// Refresh credentials die and the short access token runs out. Until
    /// refresh tokens exist this revokes, like [`Impact::Revoke`].
    RevokeRefresh,
    /// Inactive until the condition clears (only for `on_owner_lost`), then
    /// active again; revoked if it has not cleared when the tier's grace
    /// period ends.
    Suspend,
    /// Revoke every live session. Terminal.
    Revoke,
}

impl Impact {
    /// A total order of strictness: none < recheck < shorten (a longer
    /// bound is less strict) < revoke_refresh < suspend < revoke.
    pub fn strictness(self, other: Impact) -> Ordering {
        fn rank(i: Impact) -> (u8, std::cmp::Reverse<Duration>) {
            match i {
                Impact::None => (0, std::cmp::Reverse(Duration::ZERO)),
                Impact::Recheck => (1, std::cmp::Reverse(Duration::ZERO)),
                Impact::Shorten(d) => (2, std::cmp::Reverse(d)),
                Impact::RevokeRefresh => (3, std::cmp::Reverse(Duration::ZERO)),
                Impact::Suspend => (4, std::cmp::Reverse(Duration::ZERO)),
                Impact::Revoke => (5, std::cmp::Reverse(Duration::ZERO)),
            }
        }
        rank(self).cmp(&rank(other))
    }

    /// The stricter of two impacts.
    pub fn stricter(self, other: Impact) -> Impact {
        if other.strictness(self) == Ordering::Greater { other } else { self }
    }
}

impl fmt::Display for Impact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Impact::None => f.write_str("none"),
            Impact::Recheck => f.write_str("recheck"),
            Impact::Shorten(d) => write!(f, "shorten {}", humantime::format_duration(*d)),
            Impact::RevokeRefresh => f.write_str("revoke_refresh"),
            Impact::Suspend => f.write_str("suspend"),
            Impact::Revoke => f.write_str("revoke"),
        }
    }
}

/// An impact could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadImpact(pub String);

impl FromStr for Impact {
    type Err = BadImpact;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (word, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        let rest = rest.trim();
        let no_argument = |impact| {
            if rest.is_empty() { Ok(impact) } else { Err(BadImpact(format!("{word:?} takes no argument"))) }
        };
        match word {
            "none" => no_argument(Impact::None),
            "recheck" => no_argument(Impact::Recheck),
            "revoke_refresh" => no_argument(Impact::RevokeRefresh),
            "suspend" => no_argument(Impact::Suspend),
            "revoke" => no_argument(Impact::Revoke),
            "shorten" => {
                let d = humantime::parse_duration(rest).map_err(|_| {
                    BadImpact(format!("\"shorten\" needs a duration, like \"shorten 5m\" (got {rest:?})"))
                })?;
                Ok(Impact::Shorten(d))
            }
            _ => Err(BadImpact(format!(
                "{s:?} is not an impact (use none, recheck, \"shorten <duration>\", revoke_refresh, suspend or revoke)"
            ))),
        }
    }
}

macro_rules! triggers {
    ($($(#[$doc:meta])* $variant:ident => $key:literal),+ $(,)?) => {
        /// The directory changes a tier can give an impact to: the rows of
        /// the policy table. Deactivation and deletion are not here: they
        /// always revoke, and no configuration can weaken that.
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
        pub enum Trigger {
            $($(#[$doc])* $variant),+
        }

        impl Trigger {
            /// Every trigger.
            pub const ALL: &'static [Trigger] = &[$(Trigger::$variant),+];

            /// The configuration key, e.g. `on_attributes_changed`.
            pub const fn key(self) -> &'static str {
                match self { $(Trigger::$variant => $key),+ }
            }

            pub(crate) const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

triggers! {
    /// Removed from a group that confers a tier (e.g. `prod-admins`).
    TierGroupRemoved => "on_tier_group_removed",
    /// Added to a group, or removed from one that confers no tier.
    GroupChanged => "on_group_changed",
    /// Attributes changed (name, e-mails, title, manager, …).
    AttributesChanged => "on_attributes_changed",
    /// The identity gained a tier (`riskTier` raised, a tier group joined).
    TierGained => "on_tier_gained",
    /// The identity lost a tier without leaving a tier group (`riskTier`
    /// lowered).
    TierLost => "on_tier_lost",
    /// A non-human identity lost its last active owner.
    OwnerLost => "on_owner_lost",
    /// A non-human identity's owners changed.
    OwnerChanged => "on_owner_changed",
}

/// How many triggers there are.
pub(crate) const TRIGGERS: usize = Trigger::ALL.len();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impacts_parse_and_order() {
        assert_eq!("shorten 5m".parse::<Impact>(), Ok(Impact::Shorten(Duration::from_secs(300))));
        assert_eq!(" revoke ".parse::<Impact>(), Ok(Impact::Revoke));
        assert!("shorten".parse::<Impact>().is_err());
        assert!("revoke now".parse::<Impact>().is_err());
        assert!("delete".parse::<Impact>().is_err());
        let five = Impact::Shorten(Duration::from_secs(300));
        let one = Impact::Shorten(Duration::from_secs(60));
        assert_eq!(five.stricter(one), one);
        assert_eq!(Impact::Recheck.stricter(five), five);
        assert_eq!(Impact::Suspend.stricter(Impact::RevokeRefresh), Impact::Suspend);
        assert_eq!(Impact::Revoke.stricter(Impact::Suspend), Impact::Revoke);
        for i in [Impact::None, Impact::Recheck, five, Impact::RevokeRefresh, Impact::Suspend, Impact::Revoke]
        {
            assert_eq!(i.to_string().parse::<Impact>(), Ok(i));
        }
    }
}
