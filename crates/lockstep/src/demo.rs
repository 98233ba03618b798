//! `lockstep demo`: the whole promise in six steps, against a real server
//! on a loopback socket and a temporary data directory.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use lockstep_http::{AppState, HttpConfig};
use lockstep_store_sqlite::Durability;
use serde_json::{Value, json};

use crate::serve::open_engine;

pub fn run() -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(demo())
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
}

async fn demo() -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let keys = crate::keys::open(dir.path())?;
    let engine = open_engine(dir.path(), Durability::Full, Default::default())?;
    let engine = Arc::new(engine.with_signer(Arc::new(lockstep_http::KeySigner(keys.clone()))));
    let admin = engine.rotate_admin_token()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state =
        AppState { engine: engine.clone(), config: Arc::new(HttpConfig::default()), keys: Some(keys) };
    let server = tokio::spawn(lockstep_http::run(listener, state, std::future::pending()));
    say(format!("Lockstep demo: server on {base}, data in {}", dir.path().display()));
    let http = reqwest::Client::new();
    let auth = format!("Bearer {admin}");

    say("\n1. Create a user through SCIM (POST /scim/v2/Users)");
    let user: Value = http
        .post(format!("{base}/scim/v2/Users"))
        .header("Authorization", &auth)
        .header("Content-Type", "application/scim+json")
        .json(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@example.com",
            "externalId": "hr-1815",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "active": true
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = user["id"].as_str().context("no id in SCIM response")?.to_owned();
    say(format!("   -> 201, id {id}"));

    say("\n2. Open a session for that user (POST /v1/sessions)");
    let session: Value = http
        .post(format!("{base}/v1/sessions"))
        .header("Authorization", &auth)
        .json(&json!({"subject": "ada@example.com", "ttl": "1h"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = session["access_token"].as_str().context("no access_token")?.to_owned();
    say(format!("   -> 201, session {}, token {}…", session["session_id"], &token[..12]));

    let introspect = |token: String| {
        let http = http.clone();
        let auth = auth.clone();
        let url = format!("{base}/oauth2/introspect");
        async move {
            let v: Value = http
                .post(url)
                .header("Authorization", auth)
                .form(&[("token", token)])
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            anyhow::Ok(v)
        }
    };
    say("\n3. Introspect the token (POST /oauth2/introspect)");
    let before = introspect(token.clone()).await?;
    say(format!("   -> {before}"));
    if before["active"] != json!(true) {
        bail!("expected an active token");
    }

    say("\n4. Deactivate the user through SCIM (PATCH active -> false)");
    #[allow(clippy::disallowed_methods)] // wall-clock timing of the demo itself
    let started = Instant::now();
    let patched = http
        .patch(format!("{base}/scim/v2/Users/{id}"))
        .header("Authorization", &auth)
        .json(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}]
        }))
        .send()
        .await?
        .error_for_status()?;
    let round_trip = started.elapsed();
    say(format!(
        "   -> {} in {:.2} ms (the response is sent only after the session impact is committed)",
        patched.status(),
        round_trip.as_secs_f64() * 1e3
    ));

    say("\n5. Introspect again, right after the PATCH response");
    let after = introspect(token).await?;
    say(format!("   -> {after}"));
    if after != json!({"active": false}) {
        bail!("the token is still active after deactivation");
    }

    say("\n6. Read the audit trail (GET /v1/audit)");
    let audit: Value = http
        .get(format!("{base}/v1/audit"))
        .header("Authorization", &auth)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let records = audit["records"].as_array().cloned().unwrap_or_default();
    for r in &records {
        say(format!(
            "   #{:<2} {:<32} dir_event={:<4} {} {}",
            r["seq"],
            r["kind"].as_str().unwrap_or(""),
            r["directory_event"].as_u64().map_or("-".to_owned(), |e| e.to_string()),
            r["actor"].as_str().unwrap_or(""),
            r["detail"].as_str().unwrap_or("")
        ));
    }
    let deactivated = records.iter().find(|r| r["kind"] == "directory.identity_deactivated");
    let revoked = records.iter().find(|r| r["kind"] == "session.revoked");
    let (Some(d), Some(s)) = (deactivated, revoked) else { bail!("audit trail lacks the linked pair") };
    if d["directory_event"] != s["directory_event"] {
        bail!("session.revoked does not cite the directory event");
    }
    let metrics = http
        .get(format!("{base}/metrics"))
        .header("Authorization", &auth)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let sample = |name: &str| {
        metrics.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()))
    };
    if let (Some(sum), Some(count)) = (
        sample("lockstep_revocation_propagation_seconds_sum "),
        sample("lockstep_revocation_propagation_seconds_count "),
    ) && count > 0.0
    {
        say(format!(
            "\nDirectory write → session cut: {:.0} µs (directory event {} committed → its session impact committed; lockstep_revocation_propagation_seconds)",
            sum / count * 1e6,
            d["directory_event"]
        ));
    }
    say(format!("PATCH round trip including the cut: {:.2} ms", round_trip.as_secs_f64() * 1e3));
    server.abort();
    Ok(ExitCode::SUCCESS)
}
