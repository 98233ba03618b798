//! Settings: flag > environment > TOML file > default, validated into one
//! typed value before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use lockstep_domain::TokenFormat;
use lockstep_engine::{SessionLimits, TokenSettings};
use lockstep_policy::{Policy, PolicyConfig, TierConfig};
use lockstep_store_sqlite::Durability;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cli::ServeArgs;

/// The TOML file. Unknown keys are errors, so a typo never silently falls
/// back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    public_url: Option<String>,
    durability: Option<String>,
    body_limit: Option<usize>,
    log_format: Option<String>,
    sessions: Option<FileSessions>,
    scim: Option<FileScim>,
    policy: Option<FilePolicy>,
    tokens: Option<FileTokens>,
    ssf: Option<FileSsf>,
    source: Option<Vec<crate::sources::FileSource>>,
}

/// `[ssf]`: Shared Signals delivery.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSsf {
    /// Nice value of the delivery threads, 0 (the server's priority) to 19.
    delivery_nice: Option<i32>,
}

/// `[tokens]`: access token format and lifetimes, JWT issuer and
/// audience, retention.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTokens {
    issuer: Option<String>,
    audience: Option<String>,
    access_token_format: Option<String>,
    access_token_ttl: Option<String>,
    retention: Option<String>,
    max_rotation_grace: Option<String>,
}

/// `[policy]`: tiers, each a table whose keys are checked one by one so an
/// error names the key (`policy.tiers.privileged.on_attribute_changed`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    tiers: Option<toml::Table>,
}

/// `[scim]`: size limits below the body limit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScim {
    max_identifier_length: Option<usize>,
    max_string_length: Option<usize>,
    max_binary_length: Option<usize>,
    max_values: Option<usize>,
    max_group_members: Option<usize>,
    /// Whether `/ServiceProviderConfig` carries the agent drafts'
    /// `agentExtension` (default true; a strict RFC 7643 client may refuse
    /// an attribute it does not know).
    advertise_agent_extension: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSessions {
    default_ttl: Option<String>,
    max_ttl: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated settings for `serve`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    pub durability: Durability,
    pub body_limit: usize,
    pub limits: SessionLimits,
    pub log_format: LogFormat,
    pub admin_token: Option<String>,
    pub scim_limits: lockstep_scim::Limits,
    pub advertise_agent_extension: bool,
    /// `[ssf] delivery_nice`.
    pub delivery_nice: i32,
    pub policy: Policy,
    /// Where the policy came from (file and its hash), for the audit.
    pub policy_source: Option<String>,
    pub tokens: TokenSettings,
    /// Neither `tokens.issuer` nor `public_url` was set: the issuer (and,
    /// if not set either, the audience) is the address actually bound.
    pub issuer_from_listen: bool,
    pub audience_from_issuer: bool,
    /// `[[source]]` tables, validated.
    pub sources: Vec<crate::sources::ConfiguredSource>,
}

fn duration(field: &str, value: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(value.trim())
        .with_context(|| format!("{field}: {value:?} is not a duration (use e.g. \"15m\", \"12h\")"))
}

impl Settings {
    /// Resolves and validates settings.
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Self> {
        let (file, file_hash) = match &args.config {
            Some(path) => load(path)?,
            None => (FileConfig::default(), None),
        };
        Self::from_file(args, file, file_hash)
    }

    /// The settings a configuration file's text gives, with no flags: what
    /// the configuration fuzz target drives (every error names its key).
    pub fn from_text(text: &str) -> anyhow::Result<Self> {
        let file: FileConfig = toml::from_str(text).context("config: not valid")?;
        Self::from_file(&ServeArgs::default(), file, None)
    }

    fn from_file(args: &ServeArgs, file: FileConfig, file_hash: Option<String>) -> anyhow::Result<Self> {
        let policy = policy(file.policy.unwrap_or_default())?;
        let policy_source = match (&args.config, file_hash) {
            (Some(path), Some(hash)) => Some(format!("file={} file_sha256={hash}", path.display())),
            _ => None,
        };
        let sessions = file.sessions.unwrap_or_default();
        let scim = file.scim.unwrap_or_default();
        let advertise_agent_extension = scim.advertise_agent_extension.unwrap_or(true);
        let scim_limits = scim_limits(scim)?;
        let listen_text = args.listen.clone().or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_text
            .parse::<SocketAddr>()
            .with_context(|| format!("listen: {listen_text:?} is not an address like 127.0.0.1:8080"))?;
        let durability = match args.durability.clone().or(file.durability).as_deref().unwrap_or("full") {
            "full" => Durability::Full,
            "normal" => Durability::Normal,
            other => bail!("durability: {other:?} is not one of full, normal"),
        };
        let body_limit = args.body_limit.or(file.body_limit).unwrap_or(lockstep_http::DEFAULT_BODY_LIMIT);
        if !(1024..=64 * 1024 * 1024).contains(&body_limit) {
            bail!("body_limit: {body_limit} must be between 1024 and 67108864 bytes");
        }
        let defaults = SessionLimits::default();
        let default_ttl = match args.session_default_ttl.clone().or(sessions.default_ttl) {
            Some(v) => duration("sessions.default_ttl", &v)?,
            None => defaults.default_ttl,
        };
        let max_ttl = match args.session_max_ttl.clone().or(sessions.max_ttl) {
            Some(v) => duration("sessions.max_ttl", &v)?,
            None => defaults.max_ttl,
        };
        if default_ttl.is_zero() || default_ttl > max_ttl {
            bail!("sessions.default_ttl: must be more than 0 and at most sessions.max_ttl");
        }
        let log_format = match args.log_format.clone().or(file.log_format).as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("log_format: {other:?} is not one of text, json"),
        };
        let public_url = args.public_url.clone().or(file.public_url);
        if let Some(url) = &public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("public_url: {url:?} must start with http:// or https://");
        }
        let file_tokens = file.tokens.unwrap_or_default();
        let issuer_from_listen = file_tokens.issuer.is_none() && public_url.is_none();
        let audience_from_issuer = file_tokens.audience.is_none();
        let tokens = tokens(file_tokens, public_url.as_deref(), listen)?;
        let sources =
            crate::sources::configure(file.source.unwrap_or_default(), &|var| std::env::var(var).ok())?;
        let delivery_nice =
            file.ssf.unwrap_or_default().delivery_nice.unwrap_or(lockstep_http::DEFAULT_DELIVERY_NICE);
        if !(0..=19).contains(&delivery_nice) {
            bail!(
                "ssf.delivery_nice: {delivery_nice} must be between 0 (delivery at the server's priority) and 19 (lowest)"
            );
        }
        Ok(Self {
            delivery_nice,
            sources,
            tokens,
            issuer_from_listen,
            audience_from_issuer,
            listen,
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./lockstep-data")),
            public_url,
            durability,
            body_limit,
            limits: SessionLimits { default_ttl, max_ttl },
            log_format,
            admin_token: std::env::var("LOCKSTEP_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()),
            scim_limits,
            advertise_agent_extension,
            policy,
            policy_source,
        })
    }
}

fn tokens(file: FileTokens, public_url: Option<&str>, listen: SocketAddr) -> anyhow::Result<TokenSettings> {
    let d = TokenSettings::default();
    let issuer = match file.issuer {
        Some(i) if i.starts_with("http://") || i.starts_with("https://") => {
            i.trim_end_matches('/').to_owned()
        }
        Some(i) => bail!("tokens.issuer: {i:?} must be a URL starting with http:// or https://"),
        None => public_url.map_or_else(|| format!("http://{listen}"), |u| u.trim_end_matches('/').to_owned()),
    };
    let audience = match file.audience {
        Some(a) if a.trim().is_empty() => bail!("tokens.audience: must not be empty"),
        Some(a) => a,
        None => issuer.clone(),
    };
    let access_token_format = match file.access_token_format.as_deref() {
        None => d.access_token_format,
        Some(f) => f
            .parse::<TokenFormat>()
            .map_err(|_| anyhow::anyhow!("tokens.access_token_format: {f:?} is not one of opaque, jwt"))?,
    };
    let bounded = |key: &str, value: Option<String>, default: Duration, min: Duration, max: Duration| {
        let Some(v) = value else { return Ok(default) };
        let d = duration(&format!("tokens.{key}"), &v)?;
        if d < min || d > max {
            bail!(
                "tokens.{key}: {v:?} must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            );
        }
        Ok(d)
    };
    let secs = Duration::from_secs;
    Ok(TokenSettings {
        issuer,
        audience,
        access_token_format,
        access_token_ttl: bounded(
            "access_token_ttl",
            file.access_token_ttl,
            d.access_token_ttl,
            secs(10),
            secs(24 * 3600),
        )?,
        retention: bounded("retention", file.retention, d.retention, secs(60), secs(10 * 365 * 24 * 3600))?,
        max_rotation_grace: bounded(
            "max_rotation_grace",
            file.max_rotation_grace,
            d.max_rotation_grace,
            Duration::ZERO,
            secs(90 * 24 * 3600),
        )?,
    })
}

fn scim_limits(file: FileScim) -> anyhow::Result<lockstep_scim::Limits> {
    let d = lockstep_scim::Limits::default();
    let limit = |key: &str, value: Option<usize>, default: usize, max: usize| match value {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(v) => bail!("scim.{key}: {v} must be between 1 and {max}"),
    };
    Ok(lockstep_scim::Limits {
        max_identifier: limit("max_identifier_length", file.max_identifier_length, d.max_identifier, 4096)?,
        max_string: limit("max_string_length", file.max_string_length, d.max_string, 1 << 20)?,
        max_binary: limit("max_binary_length", file.max_binary_length, d.max_binary, 1 << 24)?,
        max_values: limit("max_values", file.max_values, d.max_values, 100_000)?,
        max_members: limit("max_group_members", file.max_group_members, d.max_members, 10_000_000)?,
    })
}

fn load(path: &Path) -> anyhow::Result<(FileConfig, Option<String>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("config: cannot read {}", path.display()))?;
    let hash = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let file = toml::from_str(&text).with_context(|| format!("config: {} is not valid", path.display()))?;
    Ok((file, Some(hash)))
}

/// Reads `[policy.tiers.*]` into the policy crate's configuration, naming
/// the key of anything that is not what it should be.
fn policy(file: FilePolicy) -> anyhow::Result<Policy> {
    let mut config = PolicyConfig::default();
    for (tier, value) in file.tiers.unwrap_or_default() {
        let toml::Value::Table(table) = value else {
            bail!("policy.tiers.{tier}: must be a table ([policy.tiers.{tier}])");
        };
        let mut t = TierConfig::default();
        for (key, value) in table {
            let name = format!("policy.tiers.{tier}.{key}");
            let text = |v: &toml::Value| match v {
                toml::Value::String(s) => Ok(s.clone()),
                other => bail!("{name}: must be a string, not {}", other.type_str()),
            };
            match key.as_str() {
                "groups" => {
                    let toml::Value::Array(items) = &value else {
                        bail!("{name}: must be a list of group names, like [\"prod-admins\"]");
                    };
                    t.groups = Some(items.iter().map(text).collect::<anyhow::Result<_>>()?);
                }
                "session_max_ttl" => t.session_max_ttl = Some(text(&value)?),
                "idle_timeout" => t.idle_timeout = Some(text(&value)?),
                "owner_grace" => t.owner_grace = Some(text(&value)?),
                "credential_ttl" => t.credential_ttl = Some(text(&value)?),
                "credential_max_ttl" => t.credential_max_ttl = Some(text(&value)?),
                "max_sessions" => {
                    let n = value.as_integer().filter(|n| *n > 0).and_then(|n| u32::try_from(n).ok());
                    t.max_sessions = Some(n.with_context(|| format!("{name}: must be a positive integer"))?);
                }
                k if k.starts_with("on_") => t.impacts.push((key.clone(), text(&value)?)),
                _ => bail!(
                    "{name}: unknown key (use groups, session_max_ttl, idle_timeout, max_sessions, owner_grace, credential_ttl, credential_max_ttl or on_<change>)"
                ),
            }
        }
        config.tiers.push((tier, t));
    }
    Policy::from_config(&config).map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_apply_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lockstep.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndurability = \"normal\"\n[sessions]\ndefault_ttl = \"5m\"\nmax_ttl = \"1h\"\n",
        )
        .unwrap();
        let args = ServeArgs { config: Some(path.clone()), ..ServeArgs::default() };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.durability, Durability::Normal);
        assert_eq!(s.limits.default_ttl, Duration::from_secs(300));
        let args =
            ServeArgs { config: Some(path), listen: Some("127.0.0.1:7000".into()), ..ServeArgs::default() };
        assert_eq!(Settings::resolve(&args).unwrap().listen.port(), 7000);
    }

    #[test]
    fn bad_values_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let err = Settings::resolve(&ServeArgs { config: Some(path), ..ServeArgs::default() }).unwrap_err();
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
        let err = Settings::resolve(&ServeArgs { durability: Some("fast".into()), ..ServeArgs::default() })
            .unwrap_err();
        assert!(err.to_string().contains("durability"));
        let err =
            Settings::resolve(&ServeArgs { session_max_ttl: Some("forever".into()), ..ServeArgs::default() })
                .unwrap_err();
        assert!(format!("{err:#}").contains("sessions.max_ttl"));
    }

    #[test]
    fn delivery_nice_defaults_to_nineteen_and_bad_values_name_the_key() {
        assert_eq!(Settings::from_text("").unwrap().delivery_nice, 19);
        assert_eq!(Settings::from_text("[ssf]\ndelivery_nice = 0\n").unwrap().delivery_nice, 0);
        for text in ["[ssf]\ndelivery_nice = 20\n", "[ssf]\ndelivery_nice = -1\n", "[ssf]\nnice = 1\n"] {
            let err = Settings::from_text(text).unwrap_err();
            assert!(format!("{err:#}").contains("nice"), "{text}: {err:#}");
        }
        let err = Settings::from_text("[ssf]\ndelivery_nice = 20\n").unwrap_err();
        assert!(err.to_string().contains("ssf.delivery_nice"), "{err:#}");
    }

    #[test]
    fn the_two_line_policy_works_as_written_and_bad_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lockstep.toml");
        std::fs::write(
            &path,
            "[policy.tiers.privileged]\ngroups = [\"prod-admins\"]      # displayName (or id) of the groups that confer the tier\n",
        )
        .unwrap();
        let s = Settings::resolve(&ServeArgs { config: Some(path.clone()), ..ServeArgs::default() }).unwrap();
        let group = lockstep_domain::GroupId::from_uuid(uuid::Uuid::from_u128(1));
        assert!(s.policy.confers(group, "Prod-Admins"));
        assert!(s.policy_source.unwrap().contains("file_sha256="));
        for (text, key) in [
            ("[policy.tiers.privileged]\non_attribute_changed = \"revoke\"\n", "on_attribute_changed"),
            (
                "[policy.tiers.privileged]\nsession_max_ttl = 3600\n",
                "policy.tiers.privileged.session_max_ttl",
            ),
            ("[policy.tiers.non_human]\non_deleted = \"suspend\"\n", "policy.tiers.non_human.on_deleted"),
            ("[policy.tiers.admins]\ngroups = [\"x\"]\n", "policy.tiers.admins"),
            ("[policy.tiers.standard]\nmax_sessions = 0\n", "policy.tiers.standard.max_sessions"),
            ("[policy.tiers.standard]\ncolour = \"red\"\n", "policy.tiers.standard.colour"),
            ("[policy]\ntier = 1\n", "tier"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Settings::resolve(&ServeArgs { config: Some(path.clone()), ..ServeArgs::default() })
                .unwrap_err();
            assert!(format!("{err:#}").contains(key), "{text}: {err:#}");
        }
    }
}
