//! `lockstep reach POSITION`: what a directory change reached, from a
//! running server or straight from a data directory.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use lockstep_domain::DirectoryEventId;
use lockstep_proto::admin::ReachView;
use lockstep_store_sqlite::Durability;

use crate::cli::ReachArgs;
use crate::serve::open_stores;

pub fn run(args: &ReachArgs) -> anyhow::Result<ExitCode> {
    let view = match &args.data_dir {
        Some(dir) => offline(dir, args.position)?,
        None => online(args)?,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
    } else {
        print(&mut out, &view)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn offline(dir: &std::path::Path, position: u64) -> anyhow::Result<ReachView> {
    if !dir.join(lockstep_store_sqlite::SESSIONS_FILE).exists() {
        bail!("--data-dir: {} holds no Lockstep data", dir.display());
    }
    let stores = open_stores(dir, Durability::Full)?;
    let now = lockstep_engine::Clock::now(&lockstep_engine::SystemClock);
    let r = lockstep_engine::reach(
        stores.directory.as_ref(),
        stores.sessions.as_ref(),
        DirectoryEventId(position),
        now,
    )?;
    Ok(ReachView::build(&r.event, &r.caused, &r.records, &r.touched, &r.still_live, r.truncated, r.at)
        .with_signals(&r.signals))
}

fn online(args: &ReachArgs) -> anyhow::Result<ReachView> {
    let token =
        args.token.as_deref().context("--token (or LOCKSTEP_TOKEN): a credential with the audit scope")?;
    let url = format!("{}/v1/directory-events/{}/reach", args.url.trim_end_matches('/'), args.position);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let r = reqwest::Client::new()
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("--url: cannot reach {url}"))?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!("{url}: {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("{url}: not a reach report"))
    })
}

fn print(out: &mut impl Write, v: &ReachView) -> std::io::Result<()> {
    let e = &v.event;
    writeln!(
        out,
        "directory event {} at {}: {} of {} {} ({})",
        e.position, e.at, e.change, e.subject_type, e.subject_name, e.subject
    )?;
    if !v.caused.is_empty() {
        writeln!(out, "caused {} event(s):", v.caused.len())?;
        for c in &v.caused {
            writeln!(out, "  {:>8}  {:<22} {} {}", c.position, c.change, c.subject_type, c.subject_name)?;
        }
    }
    writeln!(out, "decisions:")?;
    for d in &v.decisions {
        let decision = d.detail.split("; decision ").nth(1).unwrap_or("no session impact");
        writeln!(out, "  {:>8}  {decision}", d.position)?;
    }
    if !v.signals.is_empty() {
        writeln!(out, "shared signals: {} SET(s)", v.signals.len())?;
        for s in &v.signals {
            let when = s.delivered_at.as_deref().map_or_else(
                || {
                    format!(
                        "pending ({} failed attempt(s){})",
                        s.attempts,
                        s.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                    )
                },
                |at| format!("delivered {at}"),
            );
            let event = s.event.rsplit('/').next().unwrap_or(&s.event);
            writeln!(out, "  stream {}  {:<20} {}  {when}", s.stream_id, event, s.jti)?;
        }
    }
    writeln!(out, "sessions touched: {}", v.sessions.len())?;
    for t in &v.sessions {
        writeln!(
            out,
            "  {}  {:<28} {:<14} now {:<9} expires {}  ({})",
            t.now.session_id, t.action, t.now.username, t.now.state, t.now.expires_at, t.actor
        )?;
    }
    match &v.live_until {
        None => writeln!(out, "nothing of the subjects still lives.")?,
        Some(until) => {
            writeln!(out, "still live: {} session(s), the last until {until}:", v.still_live.len())?;
            for s in &v.still_live {
                writeln!(
                    out,
                    "  {}  {:<14} {:<9} expires {}",
                    s.session_id, s.username, s.state, s.expires_at
                )?;
            }
        }
    }
    if v.truncated {
        writeln!(out, "(the fan-out was cut at the reporting limit)")?;
    }
    writeln!(out, "reported at {}", v.reported_at)
}
