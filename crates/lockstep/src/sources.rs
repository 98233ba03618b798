//! `[[source]]` tables, the connectors `serve` starts for them, and the
//! `lockstep import` / `lockstep sources` commands that talk to a running
//! server.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use lockstep_domain::SourceId;
use lockstep_engine::Engine;
use lockstep_engine::sources::{Breaker, Removal, SourceHandle, SourceSettings};
use lockstep_proto::sources::{AppliedView, ImportRequest, ImportResponse, SourcesResponse};
use lockstep_source_ldap::{LdapSourceConfig, Mode};
use serde::Deserialize;

/// One `[[source]]` table. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSource {
    name: Option<String>,
    kind: Option<String>,
    max_staleness: Option<String>,
    // LDAP
    preset: Option<String>,
    url: Option<String>,
    bind_dn: Option<String>,
    bind_password_env: Option<String>,
    base_dn: Option<String>,
    group_base_dn: Option<String>,
    mode: Option<String>,
    poll_interval: Option<String>,
    user_filter: Option<String>,
    group_filter: Option<String>,
    disabled_filter: Option<String>,
    page_size: Option<i64>,
    connect_timeout: Option<String>,
    attributes: Option<FileAttributes>,
    // Shared Signals (an upstream transmitter)
    issuer: Option<String>,
    jwks_uri: Option<String>,
    audience: Option<String>,
    push_token_env: Option<String>,
    poll_url: Option<String>,
    poll_token_env: Option<String>,
    // Both
    breaker: Option<FileBreaker>,
}

/// `[source.attributes]`: LDAP attribute names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAttributes {
    user_name: Option<String>,
    email: Option<String>,
    display_name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    key: Option<String>,
    member: Option<String>,
    group_name: Option<String>,
}

/// `[source.breaker]`: the mass-delete circuit breaker.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileBreaker {
    max_removals: Option<i64>,
    percent: Option<i64>,
    min: Option<i64>,
    max: Option<i64>,
    window: Option<String>,
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct ConfiguredSource {
    /// What the engine needs.
    pub settings: SourceSettings,
    /// The LDAP connector's configuration (kind `ldap`).
    pub ldap: Option<LdapSourceConfig>,
    /// The upstream transmitter's configuration (kind `ssf`).
    pub ssf: Option<lockstep_ssf::InboundConfig>,
}

fn duration(key: &str, value: &str) -> anyhow::Result<Duration> {
    let d = humantime::parse_duration(value.trim())
        .with_context(|| format!("{key}: {value:?} is not a duration (use e.g. \"30s\", \"2m\", \"25h\")"))?;
    if d.is_zero() {
        bail!("{key}: must be more than 0");
    }
    Ok(d)
}

fn count(key: &str, value: i64, min: i64, max: i64) -> anyhow::Result<usize> {
    if !(min..=max).contains(&value) {
        bail!("{key}: {value} must be between {min} and {max}");
    }
    usize::try_from(value).with_context(|| format!("{key}: {value} is out of range"))
}

/// Validates every `[[source]]`, naming the key at fault
/// (`source[0].bind_password_env`, `source "corp-ldap".mode`).
pub(crate) fn configure(
    tables: Vec<FileSource>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<ConfiguredSource>> {
    let mut out: Vec<ConfiguredSource> = Vec::new();
    for (i, t) in tables.into_iter().enumerate() {
        let at = format!("source[{i}]");
        let name = t.name.clone().with_context(|| format!("{at}.name: is required"))?;
        if name.is_empty()
            || name == "scim"
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bail!(
                "{at}.name: {name:?} must be letters, digits, '-', '_' or '.', and not \"scim\" (the SCIM service provider's own name)"
            );
        }
        if out.iter().any(|s| s.settings.name.as_str() == name) {
            bail!("{at}.name: {name:?} is already the name of another source");
        }
        let at = format!("source {name:?}");
        let kind =
            t.kind.clone().with_context(|| format!("{at}.kind: is required (\"ldap\" or \"file\")"))?;
        let max_staleness =
            t.max_staleness.as_deref().map(|v| duration(&format!("{at}.max_staleness"), v)).transpose()?;
        let breaker = breaker(&at, t.breaker.as_ref())?;
        let ssf_keys = [
            ("issuer", t.issuer.is_some()),
            ("jwks_uri", t.jwks_uri.is_some()),
            ("audience", t.audience.is_some()),
            ("push_token_env", t.push_token_env.is_some()),
            ("poll_url", t.poll_url.is_some()),
            ("poll_token_env", t.poll_token_env.is_some()),
        ];
        if kind != "ssf"
            && let Some((key, _)) = ssf_keys.iter().find(|(_, set)| *set)
        {
            bail!("{at}.{key}: only for kind = \"ssf\"");
        }
        let mut ssf = None;
        let (mode, removal, ldap) = match kind.as_str() {
            "ldap" => {
                let cfg = ldap(&at, &name, &t, env)?;
                let mode = match cfg.mode {
                    Mode::Syncrepl => "syncrepl",
                    Mode::Poll => "poll",
                    Mode::UsnPoll => "usn_poll",
                };
                (mode, Removal::Delete, Some(cfg))
            }
            "ssf" => {
                let cfg = upstream(&at, &name, &t, env)?;
                let mode = if cfg.poll.is_some() { "poll" } else { "push" };
                ssf = Some(cfg);
                (mode, Removal::Deactivate, None)
            }
            "file" => {
                let ldap_only = [
                    ("preset", t.preset.is_some()),
                    ("url", t.url.is_some()),
                    ("bind_dn", t.bind_dn.is_some()),
                    ("bind_password_env", t.bind_password_env.is_some()),
                    ("base_dn", t.base_dn.is_some()),
                    ("group_base_dn", t.group_base_dn.is_some()),
                    ("mode", t.mode.is_some()),
                    ("poll_interval", t.poll_interval.is_some()),
                    ("user_filter", t.user_filter.is_some()),
                    ("group_filter", t.group_filter.is_some()),
                    ("disabled_filter", t.disabled_filter.is_some()),
                    ("page_size", t.page_size.is_some()),
                    ("connect_timeout", t.connect_timeout.is_some()),
                    ("attributes", t.attributes.is_some()),
                ];
                if let Some((key, _)) = ldap_only.iter().find(|(_, set)| *set) {
                    bail!("{at}.{key}: only for kind = \"ldap\" (a file source is fed by `lockstep import`)");
                }
                ("import", Removal::Deactivate, None)
            }
            other => bail!("{at}.kind: {other:?} is not one of ldap, file, ssf"),
        };
        out.push(ConfiguredSource {
            settings: SourceSettings {
                name: SourceId::new(name),
                kind,
                mode: mode.to_owned(),
                removal,
                max_staleness,
                breaker,
            },
            ldap,
            ssf,
        });
    }
    Ok(out)
}

/// An upstream Shared Signals transmitter (`kind = "ssf"`).
fn upstream(
    at: &str,
    name: &str,
    t: &FileSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<lockstep_ssf::InboundConfig> {
    let url = |key: &str, v: &Option<String>| -> anyhow::Result<String> {
        let v = v.clone().with_context(|| format!("{at}.{key}: is required"))?;
        if !(v.starts_with("https://") || v.starts_with("http://")) {
            bail!("{at}.{key}: {v:?} must be an http(s) URL");
        }
        Ok(v)
    };
    let secret = |key: &str, var: &str, what: &str| -> anyhow::Result<String> {
        env(var).filter(|v| !v.is_empty()).with_context(|| {
            format!("{at}.{key}: the environment variable {var} ({what}) is not set (or empty)")
        })
    };
    let poll = match (&t.poll_url, &t.poll_token_env) {
        (None, None) => {
            if t.poll_interval.is_some() {
                bail!("{at}.poll_interval: only with poll_url (a pushing transmitter is not polled)");
            }
            None
        }
        (None, Some(_)) => bail!("{at}.poll_token_env: only with poll_url"),
        (Some(_), None) => bail!(
            "{at}.poll_token_env: is required with poll_url (the environment variable holding the token to poll with)"
        ),
        (Some(_), Some(var)) => Some(lockstep_ssf::poll::PollSettings {
            url: url("poll_url", &t.poll_url)?,
            token: secret("poll_token_env", var, "the token to poll the transmitter with")?,
            interval: match &t.poll_interval {
                Some(v) => duration(&format!("{at}.poll_interval"), v)?,
                None => std::time::Duration::from_secs(5),
            },
        }),
    };
    let push_token = match &t.push_token_env {
        Some(var) => Some(secret("push_token_env", var, "the token the transmitter pushes with")?),
        None if poll.is_some() => None,
        None => bail!(
            "{at}.push_token_env: is required (the environment variable holding the token the transmitter pushes with), unless the transmitter is polled (poll_url)"
        ),
    };
    let audience = t
        .audience
        .clone()
        .filter(|a| !a.is_empty())
        .with_context(|| format!("{at}.audience: is required"))?;
    Ok(lockstep_ssf::InboundConfig {
        source: name.to_owned(),
        issuer: t
            .issuer
            .clone()
            .filter(|i| !i.is_empty())
            .with_context(|| format!("{at}.issuer: is required"))?,
        jwks_uri: url("jwks_uri", &t.jwks_uri)?,
        audience,
        push_token,
        poll,
    })
}

fn breaker(at: &str, b: Option<&FileBreaker>) -> anyhow::Result<Breaker> {
    let d = Breaker::default();
    let Some(b) = b else { return Ok(d) };
    let key = |k: &str| format!("{at}.breaker.{k}");
    let breaker = Breaker {
        fixed: b.max_removals.map(|v| count(&key("max_removals"), v, 1, 10_000_000)).transpose()?,
        percent: b
            .percent
            .map(|v| count(&key("percent"), v, 1, 100))
            .transpose()?
            .map_or(d.percent, |p| p as u32),
        min: b.min.map(|v| count(&key("min"), v, 1, 10_000_000)).transpose()?.unwrap_or(d.min),
        max: b.max.map(|v| count(&key("max"), v, 1, 10_000_000)).transpose()?.unwrap_or(d.max),
        window: b.window.as_deref().map(|w| duration(&key("window"), w)).transpose()?.unwrap_or(d.window),
    };
    if breaker.min > breaker.max {
        bail!("{}: must not be more than {}", key("min"), key("max"));
    }
    Ok(breaker)
}

fn ldap(
    at: &str,
    name: &str,
    t: &FileSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<LdapSourceConfig> {
    let url = t
        .url
        .clone()
        .with_context(|| format!("{at}.url: is required (ldap://host:port or ldaps://host:port)"))?;
    if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
        bail!("{at}.url: {url:?} must start with ldap:// or ldaps://");
    }
    let base_dn =
        t.base_dn.clone().with_context(|| format!("{at}.base_dn: is required (where the users are)"))?;
    let mut cfg = match t.preset.as_deref().unwrap_or("openldap") {
        "openldap" => LdapSourceConfig::openldap(name, url, base_dn),
        "active_directory" => LdapSourceConfig::active_directory(name, url, base_dn),
        other => bail!("{at}.preset: {other:?} is not one of openldap, active_directory"),
    };
    cfg.bind_dn.clone_from(&t.bind_dn);
    if let Some(var) = &t.bind_password_env {
        let pw = env(var).filter(|p| !p.is_empty()).with_context(|| {
            format!("{at}.bind_password_env: the environment variable {var} is not set (or empty)")
        })?;
        cfg.bind_password = Some(pw);
    } else if cfg.bind_dn.is_some() {
        bail!(
            "{at}.bind_password_env: required with bind_dn (the password is read from the environment, never the file)"
        );
    }
    cfg.group_base_dn.clone_from(&t.group_base_dn);
    if let Some(mode) = &t.mode {
        cfg.mode = match mode.as_str() {
            "syncrepl" => Mode::Syncrepl,
            "poll" => Mode::Poll,
            "usn_poll" => Mode::UsnPoll,
            other => bail!("{at}.mode: {other:?} is not one of syncrepl, poll, usn_poll"),
        };
    }
    if let Some(v) = &t.poll_interval {
        cfg.poll_interval = duration(&format!("{at}.poll_interval"), v)?;
    }
    for (key, value, slot) in [
        ("user_filter", &t.user_filter, &mut cfg.user_filter),
        ("group_filter", &t.group_filter, &mut cfg.group_filter),
    ] {
        if let Some(v) = value {
            check_filter(&format!("{at}.{key}"), v)?;
            slot.clone_from(v);
        }
    }
    if let Some(v) = &t.disabled_filter {
        check_filter(&format!("{at}.disabled_filter"), v)?;
        cfg.disabled_filter = Some(v.clone());
    }
    if let Some(v) = t.page_size {
        cfg.page_size = i32::try_from(count(&format!("{at}.page_size"), v, 1, 100_000)?).unwrap_or(500);
    }
    if let Some(v) = &t.connect_timeout {
        cfg.connect_timeout = duration(&format!("{at}.connect_timeout"), v)?;
    }
    if let Some(a) = &t.attributes {
        let m = &mut cfg.mapping;
        for (value, slot) in [
            (&a.user_name, &mut m.user_name),
            (&a.email, &mut m.email),
            (&a.display_name, &mut m.display_name),
            (&a.given_name, &mut m.given_name),
            (&a.family_name, &mut m.family_name),
            (&a.key, &mut m.key),
            (&a.member, &mut m.member),
            (&a.group_name, &mut m.group_name),
        ] {
            if let Some(v) = value {
                slot.clone_from(v);
            }
        }
    }
    Ok(cfg)
}

/// A filter must at least be parenthesised and balanced: the server is the
/// judge of the rest, but a typo should fail at start, not at the first poll.
fn check_filter(key: &str, filter: &str) -> anyhow::Result<()> {
    let mut depth = 0i32;
    for c in filter.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            break;
        }
    }
    if !filter.trim_start().starts_with('(') || depth != 0 {
        bail!("{key}: {filter:?} is not an LDAP filter like \"(employeeType=disabled)\"");
    }
    Ok(())
}

/// A receiver for every Shared Signals source.
pub fn receivers(sources: &[ConfiguredSource]) -> anyhow::Result<Vec<Arc<lockstep_ssf::Inbound>>> {
    sources
        .iter()
        .filter_map(|s| s.ssf.clone())
        .map(|cfg| lockstep_ssf::Inbound::new(cfg).map(Arc::new).map_err(|e| anyhow::anyhow!(e)))
        .collect()
}

/// Starts a connector for every LDAP source; they run until `shutdown`.
pub fn start(
    engine: &Arc<Engine>,
    sources: &[ConfiguredSource],
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for source in sources {
        let Some(cfg) = source.ldap.clone() else { continue };
        let sink = Arc::new(SourceHandle::new(engine.clone(), source.settings.name.as_str())?);
        let mut stop = shutdown.clone();
        tracing::info!(source = %source.settings.name, url = %cfg.url, mode = %source.settings.mode, "starting the LDAP source");
        tasks.push(tokio::spawn(lockstep_source_ldap::run(cfg, sink, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }
    Ok(tasks)
}

/// `lockstep import --source NAME FILE [--dry-run]`.
pub fn import(
    url: &str,
    token: Option<&str>,
    source: &str,
    file: &Path,
    dry_run: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let token = token
        .context("--token (or LOCKSTEP_TOKEN): the admin token or a client secret with the scim scope")?;
    let handle =
        std::fs::File::open(file).with_context(|| format!("FILE: cannot open {}", file.display()))?;
    let size = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        let bar = indicatif::ProgressBar::new(size);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg:10} [{bar:40}] {bytes}/{total_bytes} ({eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("reading");
        Some(bar)
    } else {
        None
    };
    let reader = std::io::BufReader::new(handle);
    let rows =
        lockstep_source_file::parse(reader, lockstep_source_file::Format::of_path(file), &mut |bytes| {
            if let Some(bar) = &bar {
                bar.set_position(bytes);
            }
        })
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    } else {
        eprintln!("lockstep: read {} rows from {}", rows.len(), file.display());
    }
    let n = rows.len();
    let spinner = terminal.then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("{} {n} rows…", if dry_run { "planning" } else { "importing" }));
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    if spinner.is_none() {
        eprintln!("lockstep: sending {n} rows to {url} ({})", if dry_run { "dry run" } else { "import" });
    }
    let endpoint = format!("{}/v1/sources/{source}/import", url.trim_end_matches('/'));
    let body = ImportRequest { rows, dry_run };
    let response: ImportResponse = call(|c| c.post(&endpoint).bearer_auth(token).json(&body), &endpoint)?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let mut out = std::io::stdout().lock();
    print_plan(&mut out, &response, n)?;
    Ok(if response.held { std::process::ExitCode::from(3) } else { std::process::ExitCode::SUCCESS })
}

fn print_plan(out: &mut impl Write, r: &ImportResponse, rows: usize) -> std::io::Result<()> {
    let verb = if r.dry_run { "would" } else { "will" };
    writeln!(
        out,
        "{} of {rows} rows:",
        if r.dry_run { "plan (dry run, nothing changed)" } else { "import" }
    )?;
    writeln!(out, "  create      {:>7}", r.creates.len())?;
    for name in r.creates.iter().take(20) {
        writeln!(out, "    + {name}")?;
    }
    if r.creates.len() > 20 {
        writeln!(out, "    … and {} more", r.creates.len() - 20)?;
    }
    writeln!(out, "  update      {:>7}", r.updates.len())?;
    for name in r.updates.iter().take(20) {
        writeln!(out, "    ~ {name}")?;
    }
    let cut: usize = r.deactivations.iter().map(|d| d.sessions).sum();
    writeln!(out, "  deactivate  {:>7}  ({cut} live session(s) {verb} be cut)", r.deactivations.len())?;
    for d in r.deactivations.iter().take(50) {
        writeln!(out, "    - {} ({}): {} session(s)", d.user_name, d.external_id, d.sessions)?;
    }
    if r.deactivations.len() > 50 {
        writeln!(out, "    … and {} more", r.deactivations.len() - 50)?;
    }
    writeln!(out, "  unchanged   {:>7}", r.unchanged)?;
    writeln!(out, "  rejected    {:>7}", r.rejected.len())?;
    for x in r.rejected.iter().take(50) {
        writeln!(out, "    ! {}: {}", x.external_id, x.reason)?;
    }
    if r.held {
        writeln!(
            out,
            "held: {} deactivations exceed the circuit breaker's threshold of {}; nothing {} applied until `lockstep sources approve`",
            r.deactivations.len(),
            r.threshold,
            if r.dry_run { "would be" } else { "was" }
        )?;
    }
    if let Some(a) = &r.applied {
        print_applied(out, a)?;
    }
    Ok(())
}

fn print_applied(out: &mut impl Write, a: &AppliedView) -> std::io::Result<()> {
    writeln!(
        out,
        "applied: {} created, {} updated, {} deactivated, {} deleted, {} unchanged, {} held, {} rejected; {} session(s) revoked",
        a.created, a.updated, a.deactivated, a.deleted, a.unchanged, a.held, a.rejected, a.revoked
    )
}

fn call<T: serde::de::DeserializeOwned>(
    request: impl FnOnce(&reqwest::Client) -> reqwest::RequestBuilder,
    endpoint: &str,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let r = request(&client).send().await.with_context(|| format!("--url: cannot reach {endpoint}"))?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            let detail = serde_json::from_str::<lockstep_proto::admin::ErrorBody>(&body)
                .map(|e| e.error_description)
                .unwrap_or(body);
            bail!("{endpoint}: {status}: {detail}");
        }
        serde_json::from_str(&body).with_context(|| format!("{endpoint}: unexpected answer"))
    })
}

/// `lockstep sources list`.
pub fn list(url: &str, token: Option<&str>, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let token = token.context("--token (or LOCKSTEP_TOKEN): a credential with the audit scope")?;
    let endpoint = format!("{}/v1/sources", url.trim_end_matches('/'));
    let r: SourcesResponse = call(|c| c.get(&endpoint).bearer_auth(token), &endpoint)?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    for s in &r.sources {
        let staleness =
            s.staleness_seconds.map_or_else(|| "never complete".to_owned(), |v| format!("{v:.0}s stale"));
        writeln!(
            out,
            "{:<16} {:<5} {:<9} {:<10} {:<18} {} identities, {} groups{}{}",
            s.name,
            s.kind,
            s.mode,
            s.state,
            staleness,
            s.identities,
            s.groups,
            if s.stale { "; STALE: privileged sessions suspended" } else { "" },
            if s.held.is_empty() { String::new() } else { format!("; {} change(s) held", s.held.len()) }
        )?;
        for h in s.held.iter().take(20) {
            writeln!(out, "    held {}: {}", h.key, h.change)?;
        }
        if let Some(e) = &s.last_error {
            writeln!(out, "    last error: {e}")?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `lockstep sources approve NAME`.
pub fn approve(url: &str, token: Option<&str>, name: &str) -> anyhow::Result<std::process::ExitCode> {
    let token = token
        .context("--token (or LOCKSTEP_TOKEN): the admin token or a client secret with the scim scope")?;
    let endpoint = format!("{}/v1/sources/{name}/approve", url.trim_end_matches('/'));
    let a: AppliedView = call(|c| c.post(&endpoint).bearer_auth(token), &endpoint)?;
    print_applied(&mut std::io::stdout().lock(), &a)?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> anyhow::Result<Vec<ConfiguredSource>> {
        #[derive(Deserialize)]
        struct Doc {
            source: Vec<FileSource>,
        }
        let doc: Doc = toml::from_str(text)?;
        let env: Vec<(String, String)> =
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        configure(doc.source, &|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    const ISSUE_EXAMPLE: &str = r#"
[[source]]
name = "corp-ldap"
kind = "ldap"
url = "ldap://127.0.0.1:3890"
bind_dn = "cn=admin,dc=example,dc=com"
bind_password_env = "LDAP_BIND_PW"
base_dn = "ou=people,dc=example,dc=com"
group_base_dn = "ou=groups,dc=example,dc=com"
mode = "syncrepl"              # or "poll"
poll_interval = "30s"
max_staleness = "2m"
disabled_filter = "(employeeType=disabled)"

[[source]]
name = "hr"
kind = "file"
max_staleness = "25h"
"#;

    #[test]
    fn the_issue_example_works_as_written() {
        let s = parse(ISSUE_EXAMPLE, &[("LDAP_BIND_PW", "adminpw")]).unwrap();
        assert_eq!(s.len(), 2);
        let ldap = s[0].ldap.as_ref().unwrap();
        assert_eq!(ldap.bind_password.as_deref(), Some("adminpw"));
        assert_eq!(ldap.mode, Mode::Syncrepl);
        assert_eq!(ldap.disabled_filter.as_deref(), Some("(employeeType=disabled)"));
        assert_eq!(s[0].settings.max_staleness, Some(Duration::from_secs(120)));
        assert_eq!(s[0].settings.removal, Removal::Delete);
        assert_eq!(s[1].settings.removal, Removal::Deactivate);
        assert_eq!(s[1].settings.max_staleness, Some(Duration::from_secs(25 * 3600)));
        assert!(!format!("{:?}", s[0].ldap).contains("adminpw"), "the password is never in Debug output");
    }

    #[test]
    fn errors_name_the_key() {
        for (text, env, key) in [
            (ISSUE_EXAMPLE, &[][..], "source \"corp-ldap\".bind_password_env"),
            ("[[source]]\nkind = \"file\"\n", &[][..], "source[0].name"),
            ("[[source]]\nname = \"scim\"\nkind = \"file\"\n", &[][..], "source[0].name"),
            ("[[source]]\nname = \"hr\"\nkind = \"csv\"\n", &[][..], "source \"hr\".kind"),
            (
                "[[source]]\nname = \"hr\"\nkind = \"file\"\nurl = \"ldap://x\"\n",
                &[][..],
                "source \"hr\".url",
            ),
            (
                "[[source]]\nname = \"hr\"\nkind = \"file\"\nmax_staleness = \"soon\"\n",
                &[][..],
                "source \"hr\".max_staleness",
            ),
            (
                "[[source]]\nname = \"hr\"\nkind = \"file\"\n[[source]]\nname = \"hr\"\nkind = \"file\"\n",
                &[][..],
                "source[1].name",
            ),
            (
                "[[source]]\nname = \"l\"\nkind = \"ldap\"\nurl = \"http://x\"\nbase_dn = \"dc=x\"\n",
                &[][..],
                "source \"l\".url",
            ),
            (
                "[[source]]\nname = \"l\"\nkind = \"ldap\"\nurl = \"ldap://x\"\n",
                &[][..],
                "source \"l\".base_dn",
            ),
            (
                "[[source]]\nname = \"l\"\nkind = \"ldap\"\nurl = \"ldap://x\"\nbase_dn = \"dc=x\"\nmode = \"push\"\n",
                &[][..],
                "source \"l\".mode",
            ),
            (
                "[[source]]\nname = \"l\"\nkind = \"ldap\"\nurl = \"ldap://x\"\nbase_dn = \"dc=x\"\ndisabled_filter = \"employeeType=disabled\"\n",
                &[][..],
                "source \"l\".disabled_filter",
            ),
            (
                "[[source]]\nname = \"hr\"\nkind = \"file\"\n[source.breaker]\npercent = 0\n",
                &[][..],
                "source \"hr\".breaker.percent",
            ),
        ] {
            let err = parse(text, env).map(|_| ()).unwrap_err();
            assert!(format!("{err:#}").contains(key), "{text}: {err:#}");
        }
    }

    #[test]
    fn the_ssf_receiver_example_works_as_written() {
        let text = r#"
[[source]]
name = "upstream"
kind = "ssf"
issuer = "https://idp.example.com"
jwks_uri = "http://127.0.0.1:9000/jwks"
audience = "https://lockstep.example.com"
push_token_env = "UPSTREAM_PUSH_TOKEN"     # the transmitter must send "Authorization: Bearer <value>"
"#;
        let s = parse(text, &[("UPSTREAM_PUSH_TOKEN", "t0ken")]).unwrap();
        let ssf = s[0].ssf.as_ref().unwrap();
        assert_eq!(
            (ssf.issuer.as_str(), ssf.push_token.as_deref()),
            ("https://idp.example.com", Some("t0ken"))
        );
        assert!(ssf.poll.is_none());
        assert_eq!(s[0].settings.mode, "push");
        assert!(!format!("{ssf:?}").contains("t0ken"));
        let err = parse(text, &[]).map(|_| ()).unwrap_err();
        assert!(format!("{err:#}").contains("source \"upstream\".push_token_env"), "{err:#}");
        // A poll URL needs the token to poll with.
        let err = parse(&format!("{text}poll_url = \"http://x\"\n"), &[("UPSTREAM_PUSH_TOKEN", "t")])
            .map(|_| ())
            .unwrap_err();
        assert!(format!("{err:#}").contains("source \"upstream\".poll_token_env: is required"), "{err:#}");
    }

    /// A transmitter that offers only RFC 8936 is polled: no push token
    /// needed, the poll token from the environment, the interval optional.
    /// The README's example, as written.
    #[test]
    fn an_upstream_transmitter_can_be_polled_instead() {
        let text = r#"
[[source]]
name = "upstream"
kind = "ssf"
issuer = "https://idp.example.com"
jwks_uri = "https://idp.example.com/jwks"
audience = "https://lockstep.example.com"
poll_url = "https://idp.example.com/ssf/poll/STREAM_ID"
poll_token_env = "UPSTREAM_POLL_TOKEN"
poll_interval = "5s"
"#;
        let s = parse(text, &[("UPSTREAM_POLL_TOKEN", "p0ll")]).unwrap();
        let ssf = s[0].ssf.as_ref().unwrap();
        let poll = ssf.poll.as_ref().unwrap();
        assert_eq!(
            (poll.url.as_str(), poll.token.as_str()),
            ("https://idp.example.com/ssf/poll/STREAM_ID", "p0ll")
        );
        assert_eq!(poll.interval, std::time::Duration::from_secs(5));
        assert_eq!(ssf.push_token, None, "polled only: every push is refused");
        assert_eq!(s[0].settings.mode, "poll");
        assert!(!format!("{ssf:?}").contains("p0ll"));
        for (env, key) in [
            (&[][..], "source \"upstream\".poll_token_env: the environment variable UPSTREAM_POLL_TOKEN"),
            (&[("UPSTREAM_POLL_TOKEN", "")][..], "UPSTREAM_POLL_TOKEN"),
        ] {
            let err = parse(text, env).map(|_| ()).unwrap_err();
            assert!(format!("{err:#}").contains(key), "{err:#}");
        }
        let bad_url = text.replace("https://idp.example.com/ssf/poll/STREAM_ID", "ftp://x");
        let err = parse(&bad_url, &[("UPSTREAM_POLL_TOKEN", "p")]).map(|_| ()).unwrap_err();
        assert!(format!("{err:#}").contains("source \"upstream\".poll_url"), "{err:#}");
        let no_poll = text.replace(
            "poll_url = \"https://idp.example.com/ssf/poll/STREAM_ID\"\npoll_token_env = \"UPSTREAM_POLL_TOKEN\"\n",
            "push_token_env = \"P\"\n",
        );
        let err = parse(&no_poll, &[("P", "p")]).map(|_| ()).unwrap_err();
        assert!(
            format!("{err:#}").contains("source \"upstream\".poll_interval: only with poll_url"),
            "{err:#}"
        );
    }

    #[test]
    fn the_active_directory_preset_and_breaker_settings() {
        let s = parse(
            "[[source]]\nname = \"ad\"\nkind = \"ldap\"\npreset = \"active_directory\"\nurl = \"ldap://127.0.0.1:389\"\nbase_dn = \"DC=lockstep,DC=test\"\n[source.breaker]\nmax_removals = 5\nwindow = \"1m\"\n",
            &[],
        )
        .unwrap();
        let ldap = s[0].ldap.as_ref().unwrap();
        assert_eq!(ldap.mode, Mode::UsnPoll);
        assert_eq!(ldap.mapping.key, "objectGUID");
        assert_eq!(s[0].settings.breaker.threshold(1000), 5);
        assert_eq!(s[0].settings.breaker.window, Duration::from_secs(60));
        assert_eq!(s[0].settings.mode, "usn_poll");
    }
}
