//! HR files as a directory source: CSV with a header, or JSON Lines, with
//! the keys `externalId,userName,email,displayName,active` (`externalId`
//! and `userName` required) and optionally `kind` and `ownerExternalId`.
//!
//! Pure parsing, no I/O beyond the reader it is given: `lockstep import`
//! reads the file, this turns it into rows, and the server plans the rows
//! against what the source owns. The file is the whole truth of its
//! source, so a parse error anywhere refuses the whole file — importing
//! half a file would deactivate everyone in the other half.

use std::io::Read;

use lockstep_proto::sources::ImportRow;

/// What the file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// From a file name: `.jsonl`/`.ndjson` are JSON Lines, everything else
    /// CSV.
    pub fn of_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("jsonl" | "ndjson") => Format::JsonLines,
            _ => Format::Csv,
        }
    }
}

/// Why a file cannot be imported. Every message names the line and, where
/// there is one, the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The CSV header lacks a required column or has an unknown one.
    #[error("header: {0}")]
    Header(String),
    /// A row is not valid.
    #[error("line {line}: {message}")]
    Row {
        /// 1-based line number in the file.
        line: u64,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The file holds no rows.
    #[error("the file has no rows; an empty file never wipes the directory")]
    Empty,
    /// The same externalId twice.
    #[error("line {line}: externalId {key:?} appears again (first on line {first})")]
    Duplicate {
        /// The repeated key.
        key: String,
        /// Where it was first.
        first: u64,
        /// Where it is again.
        line: u64,
    },
    /// Reading failed.
    #[error("reading the file: {0}")]
    Io(String),
}

const COLUMNS: [&str; 7] =
    ["externalId", "userName", "email", "displayName", "active", "kind", "ownerExternalId"];

/// Parses a whole file. `progress` is called with the bytes consumed so
/// far, for a progress bar.
pub fn parse(
    reader: impl Read,
    format: Format,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<ImportRow>, ParseError> {
    let rows = match format {
        Format::Csv => parse_csv(reader, progress)?,
        Format::JsonLines => parse_jsonl(reader, progress)?,
    };
    if rows.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut seen: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (line, row) in &rows {
        if let Some(first) = seen.insert(row.external_id.as_str(), *line) {
            return Err(ParseError::Duplicate { key: row.external_id.clone(), first, line: *line });
        }
    }
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

fn required(line: u64, field: &str, value: Option<String>) -> Result<String, ParseError> {
    match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
        Some(v) => Ok(v),
        None => Err(ParseError::Row { line, message: format!("{field}: is required") }),
    }
}

fn active(line: u64, value: &str) -> Result<Option<bool>, ParseError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "true" | "1" | "yes" | "y" | "active" => Ok(Some(true)),
        "false" | "0" | "no" | "n" | "inactive" => Ok(Some(false)),
        other => Err(ParseError::Row { line, message: format!("active: {other:?} is not true or false") }),
    }
}

fn optional(value: Option<&str>) -> Option<String> {
    value.map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

fn parse_csv(reader: impl Read, progress: &mut dyn FnMut(u64)) -> Result<Vec<(u64, ImportRow)>, ParseError> {
    let mut csv = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::Headers).from_reader(reader);
    let headers = csv.headers().map_err(|e| ParseError::Header(e.to_string()))?.clone();
    let mut index = [None; COLUMNS.len()];
    for (i, h) in headers.iter().enumerate() {
        let h = h.trim_start_matches('\u{feff}');
        match COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(h)) {
            Some(c) if index[c].is_some() => {
                return Err(ParseError::Header(format!("column {h:?} appears twice")));
            }
            Some(c) => index[c] = Some(i),
            None => {
                return Err(ParseError::Header(format!(
                    "unknown column {h:?} (the columns are {})",
                    COLUMNS.join(", ")
                )));
            }
        }
    }
    for required in ["externalId", "userName"] {
        let c = COLUMNS.iter().position(|c| *c == required).unwrap_or(0);
        if index[c].is_none() {
            return Err(ParseError::Header(format!("the {required} column is required")));
        }
    }
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(ParseError::Row { line, message: e.to_string() });
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        let get = |c: usize| index[c].and_then(|i| record.get(i));
        if record.iter().all(|f| f.trim().is_empty()) {
            continue; // a blank line
        }
        rows.push((
            line,
            ImportRow {
                external_id: required(line, "externalId", get(0).map(str::to_owned))?,
                user_name: required(line, "userName", get(1).map(str::to_owned))?,
                email: optional(get(2)),
                display_name: optional(get(3)),
                active: active(line, get(4).unwrap_or(""))?,
                kind: optional(get(5)),
                owner_external_id: optional(get(6)),
            },
        ));
        if rows.len() % 1024 == 0 {
            progress(csv.position().byte());
        }
    }
    progress(csv.position().byte());
    Ok(rows)
}

fn parse_jsonl(
    mut reader: impl Read,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<(u64, ImportRow)>, ParseError> {
    let mut text = String::new();
    reader.read_to_string(&mut text).map_err(|e| ParseError::Io(e.to_string()))?;
    let mut rows = Vec::new();
    let mut consumed = 0u64;
    for (n, raw) in text.split('\n').enumerate() {
        consumed += raw.len() as u64 + 1;
        let line = n as u64 + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| ParseError::Row { line, message: format!("not a JSON object: {e}") })?;
        let serde_json::Value::Object(map) = value else {
            return Err(ParseError::Row { line, message: "not a JSON object".into() });
        };
        let text_of = |key: &str| -> Result<Option<String>, ParseError> {
            match map.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => {
                    Err(ParseError::Row { line, message: format!("{key}: must be a string, not {other}") })
                }
            }
        };
        if let Some(unknown) = map.keys().find(|k| !COLUMNS.contains(&k.as_str())) {
            return Err(ParseError::Row {
                line,
                message: format!("unknown key {unknown:?} (the keys are {})", COLUMNS.join(", ")),
            });
        }
        let active = match map.get("active") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Bool(b)) => Some(*b),
            Some(serde_json::Value::String(s)) => self::active(line, s)?,
            Some(other) => {
                return Err(ParseError::Row {
                    line,
                    message: format!("active: must be true or false, not {other}"),
                });
            }
        };
        rows.push((
            line,
            ImportRow {
                external_id: required(line, "externalId", text_of("externalId")?)?,
                user_name: required(line, "userName", text_of("userName")?)?,
                email: optional(text_of("email")?.as_deref()),
                display_name: optional(text_of("displayName")?.as_deref()),
                active,
                kind: optional(text_of("kind")?.as_deref()),
                owner_external_id: optional(text_of("ownerExternalId")?.as_deref()),
            },
        ));
        if rows.len() % 1024 == 0 {
            progress(consumed);
        }
    }
    progress(consumed.min(text.len() as u64));
    Ok(rows)
}
