//! Data-driven cases: every `cases/NAME.csv` or `cases/NAME.jsonl` is
//! parsed and the result rendered to `cases/NAME.out` (set
//! `UPDATE_SNAPSHOTS=1` to rewrite the expected files after a deliberate
//! change, then read the diff).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::path::Path;

use lockstep_source_file::{Format, parse};

fn render(
    result: &Result<Vec<lockstep_proto::sources::ImportRow>, lockstep_source_file::ParseError>,
) -> String {
    let mut out = String::new();
    match result {
        Ok(rows) => {
            for r in rows {
                writeln!(
                    out,
                    "row externalId={:?} userName={:?} email={:?} displayName={:?} active={:?} kind={:?} owner={:?}",
                    r.external_id, r.user_name, r.email, r.display_name, r.active, r.kind, r.owner_external_id
                )
                .unwrap();
            }
        }
        Err(e) => writeln!(out, "error: {e}").unwrap(),
    }
    out
}

#[test]
fn cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("csv" | "jsonl")))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "cases missing");
    let mut failures = Vec::new();
    for input in names {
        let bytes = std::fs::read(&input).unwrap();
        let mut last = 0;
        let got = render(&parse(&bytes[..], Format::of_path(&input), &mut |b| last = b));
        let expected_path = input.with_extension("out");
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!("{}:\n--- expected\n{expected}--- got\n{got}", input.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
