//! The architecture invariants of ARCHITECTURE.md that a text scan can
//! check, checked: a change that breaks one fails here, not in review.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn crates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every `.rs` file under `crates/<name>/src`, with its text.
fn sources(name: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![crates().join(name).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    assert!(!out.is_empty(), "no sources for {name}");
    out
}

fn offenders(name: &str, needles: &[&str], allowed: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in sources(name) {
        if allowed.iter().any(|a| path.ends_with(a)) {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if needles.iter().any(|needle| code.contains(needle)) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn only_wire_format_crates_derive_serde() {
    let serde = [
        "derive(Serialize",
        "derive(Deserialize",
        "Serialize)]",
        "Deserialize)]",
        "Deserialize,",
        "Serialize,",
    ];
    // Every crate of the workspace, so a new one is checked too: wire
    // formats live in proto, JOSE objects and the key file in jose, and the
    // binary's configuration file is the one other place.
    let mut checked = 0;
    for entry in std::fs::read_dir(crates()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let allowed: &[&str] = match name.as_str() {
            "proto" | "jose" => continue,
            "lockstep" => &["config.rs", "sources.rs"],
            _ => &[],
        };
        let found = offenders(&name, &serde, allowed);
        assert!(found.is_empty(), "serde derives outside proto and jose:\n{}", found.join("\n"));
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} crates found");
}

#[test]
fn the_pure_crates_do_no_io() {
    let io = [
        "tokio",
        "axum",
        "rusqlite",
        "std::fs",
        "std::net",
        "reqwest",
        "serde",
        "SystemTime",
        "Instant::now",
    ];
    for name in ["domain", "policy"] {
        let found = offenders(name, &io, &[]);
        assert!(found.is_empty(), "{name} must stay pure:\n{}", found.join("\n"));
    }
}

#[test]
fn anyhow_lives_only_in_binaries() {
    for name in ["domain", "policy", "proto", "store", "store-sqlite", "engine", "scim", "http"] {
        let found = offenders(name, &["anyhow"], &[]);
        assert!(found.is_empty(), "anyhow in a library crate:\n{}", found.join("\n"));
    }
}

#[test]
fn http_reaches_the_directory_only_through_the_read_capability() {
    let found = offenders("http", &["stores()", ".commit_identit", ".commit_group", "DirectoryStore"], &[]);
    assert!(found.is_empty(), "http writing the directory directly:\n{}", found.join("\n"));
}

#[test]
fn engine_and_http_wire_no_sql_and_no_protocols_into_the_engine() {
    let found = offenders("engine", &["axum", "lockstep_proto", "serde_json", "rusqlite::"], &[]);
    assert!(found.is_empty(), "engine depends on a protocol or a backend:\n{}", found.join("\n"));
}
