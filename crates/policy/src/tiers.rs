//! Tiers, their settings, and the policy built from a configuration.

use std::fmt;
use std::time::Duration;

use lockstep_domain::{GroupId, IdentityKind, RiskTier, Tiers};

use crate::impact::{Impact, TRIGGERS, Trigger};

/// One of the three policy tiers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// Everyone neither privileged nor non-human.
    Standard,
    /// Privileged: `riskTier` privileged, or a member of a group that
    /// confers the tier.
    Privileged,
    /// Every non-human kind (service accounts, workloads, API clients,
    /// agents), and identities whose `riskTier` is `non_human`.
    NonHuman,
}

impl Tier {
    /// Every tier.
    pub const ALL: [Tier; 3] = [Tier::Standard, Tier::Privileged, Tier::NonHuman];

    /// The configuration name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Privileged => "privileged",
            Tier::NonHuman => "non_human",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }

    /// The tiers whose settings apply to an identity in `tiers`.
    pub fn of(tiers: Tiers) -> impl Iterator<Item = Tier> {
        let standard = tiers.is_standard();
        [(standard, Tier::Standard), (tiers.privileged, Tier::Privileged), (tiers.non_human, Tier::NonHuman)]
            .into_iter()
            .filter_map(|(on, tier)| on.then_some(tier))
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The settings of one tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierSettings {
    /// Longest lifetime of a session (`None`: only the server-wide maximum).
    pub session_max_ttl: Option<Duration>,
    /// A session unused for this long is inactive (`None`: no idle timeout).
    pub idle_timeout: Option<Duration>,
    /// Most live sessions per identity; opening one more revokes the oldest.
    pub max_sessions: Option<u32>,
    /// Lifetime of a credential (API key, client secret) whose request
    /// names none.
    pub credential_ttl: Option<Duration>,
    /// The longest lifetime a credential may be given.
    pub credential_max_ttl: Option<Duration>,
    /// How long a session suspended for owner loss waits for a new active
    /// owner before it is revoked (zero: revoked at once).
    pub owner_grace: Duration,
    impacts: [Impact; TRIGGERS],
}

impl TierSettings {
    /// The impact this tier gives a trigger.
    pub fn impact(&self, trigger: Trigger) -> Impact {
        self.impacts[trigger.index()]
    }

    /// The defaults of a tier (the table in the README, pinned by tests).
    pub fn default_for(tier: Tier) -> Self {
        let five = Impact::Shorten(Duration::from_secs(300));
        let mut impacts = [Impact::None; TRIGGERS];
        let mut set = |t: Trigger, i: Impact| impacts[t.index()] = i;
        set(Trigger::TierGroupRemoved, Impact::Revoke);
        set(Trigger::GroupChanged, Impact::Recheck);
        set(Trigger::TierLost, Impact::Recheck);
        match tier {
            Tier::Standard => {}
            Tier::Privileged => {
                set(Trigger::AttributesChanged, five);
                set(Trigger::TierGained, five);
            }
            Tier::NonHuman => {
                set(Trigger::AttributesChanged, Impact::Recheck);
                set(Trigger::TierGained, five);
                set(Trigger::OwnerLost, Impact::Suspend);
                set(Trigger::OwnerChanged, Impact::Recheck);
            }
        }
        let hours = |h: u64| Some(Duration::from_secs(h * 3600));
        Self {
            session_max_ttl: match tier {
                Tier::Standard => hours(12),
                Tier::Privileged => hours(1),
                Tier::NonHuman => None,
            },
            idle_timeout: None,
            max_sessions: None,
            credential_ttl: match tier {
                Tier::NonHuman => Some(Duration::from_secs(30 * 24 * 3600)),
                Tier::Standard | Tier::Privileged => None,
            },
            credential_max_ttl: match tier {
                Tier::NonHuman => Some(Duration::from_secs(90 * 24 * 3600)),
                Tier::Standard | Tier::Privileged => None,
            },
            owner_grace: match tier {
                Tier::Privileged => Duration::ZERO,
                Tier::Standard | Tier::NonHuman => Duration::from_secs(24 * 3600),
            },
            impacts,
        }
    }
}

/// The settings in force for one combination of tiers: setting by setting,
/// the strictest of the tiers, with the tier it came from (for citing the
/// rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    /// Longest session lifetime, and its tier.
    pub session_max_ttl: Option<(Duration, Tier)>,
    /// Idle timeout, and its tier.
    pub idle_timeout: Option<(Duration, Tier)>,
    /// Most live sessions, and its tier.
    pub max_sessions: Option<(u32, Tier)>,
    /// Default credential lifetime, and its tier.
    pub credential_ttl: Option<(Duration, Tier)>,
    /// Longest credential lifetime, and its tier.
    pub credential_max_ttl: Option<(Duration, Tier)>,
    /// Owner grace, and its tier.
    pub owner_grace: (Duration, Tier),
    impacts: [(Impact, Tier); TRIGGERS],
}

impl Effective {
    /// The impact of a trigger and the tier whose rule it is.
    pub fn impact(&self, trigger: Trigger) -> (Impact, Tier) {
        self.impacts[trigger.index()]
    }

    fn combine(tiers: Tiers, settings: &[TierSettings; 3]) -> Self {
        let mut in_force = Tier::of(tiers).map(|t| (t, &settings[t.index()]));
        // `Tier::of` always yields at least one tier.
        let (first, s) = in_force.next().unwrap_or((Tier::Standard, &settings[0]));
        let mut e = Effective {
            session_max_ttl: s.session_max_ttl.map(|d| (d, first)),
            idle_timeout: s.idle_timeout.map(|d| (d, first)),
            max_sessions: s.max_sessions.map(|n| (n, first)),
            credential_ttl: s.credential_ttl.map(|d| (d, first)),
            credential_max_ttl: s.credential_max_ttl.map(|d| (d, first)),
            owner_grace: (s.owner_grace, first),
            impacts: std::array::from_fn(|i| (s.impacts[i], first)),
        };
        for (tier, s) in in_force {
            e.session_max_ttl = min_tagged(e.session_max_ttl, s.session_max_ttl.map(|d| (d, tier)));
            e.idle_timeout = min_tagged(e.idle_timeout, s.idle_timeout.map(|d| (d, tier)));
            e.max_sessions = min_tagged(e.max_sessions, s.max_sessions.map(|n| (n, tier)));
            e.credential_ttl = min_tagged(e.credential_ttl, s.credential_ttl.map(|d| (d, tier)));
            e.credential_max_ttl = min_tagged(e.credential_max_ttl, s.credential_max_ttl.map(|d| (d, tier)));
            if s.owner_grace < e.owner_grace.0 {
                e.owner_grace = (s.owner_grace, tier);
            }
            for (i, slot) in e.impacts.iter_mut().enumerate() {
                if s.impacts[i].strictness(slot.0) == std::cmp::Ordering::Greater {
                    *slot = (s.impacts[i], tier);
                }
            }
        }
        e
    }
}

fn min_tagged<T: Ord + Copy>(a: Option<(T, Tier)>, b: Option<(T, Tier)>) -> Option<(T, Tier)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 < x.0 { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// One tier's settings as written in a configuration file: every value a
/// string, parsed and checked by [`Policy::from_config`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierConfig {
    /// Groups (displayName or id) that confer the tier (privileged only).
    pub groups: Option<Vec<String>>,
    /// `session_max_ttl`.
    pub session_max_ttl: Option<String>,
    /// `idle_timeout` (`"0s"` or absent: none).
    pub idle_timeout: Option<String>,
    /// `max_sessions`.
    pub max_sessions: Option<u32>,
    /// `credential_ttl`.
    pub credential_ttl: Option<String>,
    /// `credential_max_ttl`.
    pub credential_max_ttl: Option<String>,
    /// `owner_grace`.
    pub owner_grace: Option<String>,
    /// Impacts by key (`on_attributes_changed = "shorten 5m"`), including
    /// the fixed `on_deactivated` / `on_deleted`, which must say `revoke`.
    pub impacts: Vec<(String, String)>,
}

/// The `[policy]` section of a configuration file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    /// `[policy.tiers.<name>]`, by tier name.
    pub tiers: Vec<(String, TierConfig)>,
}

/// A policy was rejected. Names the configuration key at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// The key, e.g. `policy.tiers.privileged.on_attributes_changed`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for PolicyError {}

/// A validated policy: the settings of each tier and the groups that
/// confer the privileged tier. Pure data; decisions are [`crate::evaluate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    settings: [TierSettings; 3],
    /// Folded display names (and ids) of the groups that confer the
    /// privileged tier.
    privileged_groups: Vec<String>,
    /// Indexed by `privileged as usize * 2 + non_human as usize`.
    effective: [Effective; 4],
}

impl Default for Policy {
    fn default() -> Self {
        Self::new(Tier::ALL.map(TierSettings::default_for), Vec::new())
    }
}

fn tiers_at(i: usize) -> Tiers {
    Tiers { privileged: i & 2 != 0, non_human: i & 1 != 0 }
}

impl Policy {
    fn new(settings: [TierSettings; 3], groups: Vec<String>) -> Self {
        let effective = std::array::from_fn(|i| Effective::combine(tiers_at(i), &settings));
        let mut privileged_groups: Vec<String> =
            groups.iter().map(|g| lockstep_domain::text::fold(g.trim())).collect();
        privileged_groups.sort();
        privileged_groups.dedup();
        Self { settings, privileged_groups, effective }
    }

    /// The settings in force for an identity in `tiers`.
    pub fn effective(&self, tiers: Tiers) -> &Effective {
        &self.effective[usize::from(tiers.privileged) * 2 + usize::from(tiers.non_human)]
    }

    /// One tier's own settings.
    pub fn tier(&self, tier: Tier) -> &TierSettings {
        &self.settings[tier.index()]
    }

    /// Whether a group (by id, or by display name under the identifier key)
    /// confers the privileged tier.
    pub fn confers(&self, group: GroupId, display_name: &str) -> bool {
        !self.privileged_groups.is_empty()
            && (self.privileged_groups.binary_search(&lockstep_domain::text::fold(display_name)).is_ok()
                || self.privileged_groups.binary_search(&group.to_string()).is_ok())
    }

    /// Whether any group confers a tier (so memberships matter to tiers).
    pub fn has_tier_groups(&self) -> bool {
        !self.privileged_groups.is_empty()
    }

    /// The tiers of an identity of `kind` with `risk_tier`, a member of
    /// `groups` (id, displayName).
    pub fn tiers_of<'a>(
        &self,
        kind: IdentityKind,
        risk_tier: Option<RiskTier>,
        groups: impl IntoIterator<Item = (GroupId, &'a str)>,
    ) -> Tiers {
        let mut privileged = risk_tier == Some(RiskTier::Privileged);
        if !privileged && self.has_tier_groups() {
            privileged = groups.into_iter().any(|(id, name)| self.confers(id, name));
        }
        Tiers { privileged, non_human: kind.is_non_human() || risk_tier == Some(RiskTier::NonHuman) }
    }

    /// A canonical, stable rendering of everything the policy decides by,
    /// so that its hash changes exactly when its behaviour can.
    pub fn canonical(&self) -> String {
        let mut out = String::from("lockstep-policy-v1\n");
        out.push_str(&format!("privileged.groups = {:?}\n", self.privileged_groups));
        let show = |d: Option<Duration>| d.map_or_else(|| "none".to_owned(), |d| format!("{}s", d.as_secs()));
        for tier in Tier::ALL {
            let s = self.tier(tier);
            out.push_str(&format!("{tier}.session_max_ttl = {}\n", show(s.session_max_ttl)));
            out.push_str(&format!("{tier}.idle_timeout = {}\n", show(s.idle_timeout)));
            out.push_str(&format!(
                "{tier}.max_sessions = {}\n",
                s.max_sessions.map_or_else(|| "none".to_owned(), |n| n.to_string())
            ));
            out.push_str(&format!("{tier}.credential_ttl = {}\n", show(s.credential_ttl)));
            out.push_str(&format!("{tier}.credential_max_ttl = {}\n", show(s.credential_max_ttl)));
            out.push_str(&format!("{tier}.owner_grace = {}s\n", s.owner_grace.as_secs()));
            for trigger in Trigger::ALL {
                out.push_str(&format!("{tier}.{} = {}\n", trigger.key(), s.impact(*trigger)));
            }
        }
        out
    }

    /// Builds and validates a policy from configuration. Unset settings
    /// keep the tier's default; every error names its key.
    pub fn from_config(config: &PolicyConfig) -> Result<Self, PolicyError> {
        let mut settings = Tier::ALL.map(TierSettings::default_for);
        let mut groups = Vec::new();
        for (name, tier_config) in &config.tiers {
            let key = |k: &str| format!("policy.tiers.{name}.{k}");
            let err = |k: &str, message: String| PolicyError { key: key(k), message };
            let tier = Tier::ALL.into_iter().find(|t| t.as_str() == name).ok_or_else(|| PolicyError {
                key: format!("policy.tiers.{name}"),
                message: "unknown tier (use standard, privileged or non_human)".into(),
            })?;
            let s = &mut settings[tier.index()];
            if let Some(list) = &tier_config.groups {
                if tier != Tier::Privileged {
                    return Err(err("groups", "only the privileged tier is conferred by groups".into()));
                }
                for g in list {
                    if g.trim().is_empty() {
                        return Err(err("groups", "a group name must not be empty".into()));
                    }
                    lockstep_domain::text::check_identifier(g, 256)
                        .map_err(|p| err("groups", format!("{g:?} {p}")))?;
                }
                groups.extend(list.iter().cloned());
            }
            let duration = |k: &str, v: &str| {
                humantime::parse_duration(v.trim())
                    .map_err(|_| err(k, format!("{v:?} is not a duration (use e.g. \"15m\", \"1h\")")))
            };
            if let Some(v) = &tier_config.session_max_ttl {
                let d = duration("session_max_ttl", v)?;
                if d.is_zero() {
                    return Err(err("session_max_ttl", "must be more than 0".into()));
                }
                s.session_max_ttl = Some(d);
            }
            if let Some(v) = &tier_config.idle_timeout {
                let d = duration("idle_timeout", v)?;
                s.idle_timeout = (!d.is_zero()).then_some(d);
            }
            if let Some(n) = tier_config.max_sessions {
                if n == 0 {
                    return Err(err("max_sessions", "must be at least 1".into()));
                }
                s.max_sessions = Some(n);
            }
            for (k, value, slot) in [
                ("credential_ttl", &tier_config.credential_ttl, &mut s.credential_ttl),
                ("credential_max_ttl", &tier_config.credential_max_ttl, &mut s.credential_max_ttl),
            ] {
                if let Some(v) = value {
                    let d = duration(k, v)?;
                    if d.is_zero() {
                        return Err(err(k, "must be more than 0: every credential expires".into()));
                    }
                    *slot = Some(d);
                }
            }
            if let (Some(ttl), Some(max)) = (s.credential_ttl, s.credential_max_ttl)
                && ttl > max
            {
                return Err(err("credential_ttl", "must not be longer than credential_max_ttl".into()));
            }
            if let Some(v) = &tier_config.owner_grace {
                s.owner_grace = duration("owner_grace", v)?;
            }
            for (k, v) in &tier_config.impacts {
                let impact = v.parse::<Impact>().map_err(|e| err(k, e.0))?;
                if k == "on_deactivated" || k == "on_deleted" {
                    if impact != Impact::Revoke {
                        return Err(err(
                            k,
                            format!(
                                "{impact} would keep sessions of a deactivated or deleted identity alive; \
                                 this change always revokes"
                            ),
                        ));
                    }
                    continue;
                }
                let trigger = Trigger::ALL.iter().copied().find(|t| t.key() == k).ok_or_else(|| {
                    let keys: Vec<&str> = Trigger::ALL.iter().map(|t| t.key()).collect();
                    err(k, format!("unknown setting (impacts: {})", keys.join(", ")))
                })?;
                if impact == Impact::Suspend && trigger != Trigger::OwnerLost {
                    return Err(err(
                        k,
                        "suspend needs a condition that can clear; only on_owner_lost may suspend".into(),
                    ));
                }
                s.impacts[trigger.index()] = impact;
            }
        }
        Ok(Self::new(settings, groups))
    }
}
