//! What an identity is searched by: the folded text of its searchable
//! fields, and the trigram rows (FTS5) written from it — per write, or in
//! bulk for the identities whose rows are due (see `identity_grams_due` in
//! the directory schema).

use lockstep_domain::Identity;
use lockstep_store::StoreResult;
use lockstep_store::codec::decode_list;
use rusqlite::params;
use rusqlite::types::Value;

use crate::conn::{Cached, backend};
use crate::directory::{DISPLAY_NAME_LC, EMAILS, EXTERNAL_ID, USER_NAME_LC};
use crate::search::{EMAIL_SLOT, IDENTITY_SLOTS};

/// What an identity is searched by, as stored (folded where the field
/// ignores case).
#[derive(PartialEq, Eq)]
pub(crate) struct SearchKeys {
    pub(crate) user_name: String,
    pub(crate) display_name: Option<String>,
    pub(crate) external_id: Option<String>,
    /// Distinct addresses, lower-cased, joined by newlines.
    pub(crate) emails: String,
}

/// Distinct lower-cased addresses joined by newlines (the trigram text; a
/// newline inside an address only costs a false candidate, which the exact
/// check on `identity_emails` drops).
fn fold_emails(emails: &[String]) -> String {
    let mut folded: Vec<String> = emails.iter().map(|e| lockstep_domain::text::fold(e)).collect();
    folded.sort();
    folded.dedup();
    folded.join("\n")
}

impl SearchKeys {
    /// From the stored values of the directory's written columns (`WRITTEN`).
    pub(crate) fn from_row(row: &[Value]) -> Self {
        let text = |v: &Value| match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        };
        Self::stored(
            text(&row[USER_NAME_LC]),
            text(&row[DISPLAY_NAME_LC]),
            text(&row[EXTERNAL_ID]),
            text(&row[EMAILS]).as_deref(),
        )
    }

    /// From the stored columns `user_name_lc`, `display_name_lc`,
    /// `external_id` and `emails` (encoded).
    pub(crate) fn stored(
        user_name: Option<String>,
        display_name: Option<String>,
        external_id: Option<String>,
        emails: Option<&str>,
    ) -> Self {
        Self {
            user_name: user_name.unwrap_or_default(),
            display_name,
            external_id,
            emails: fold_emails(&decode_list(emails.unwrap_or_default())),
        }
    }

    pub(crate) fn of(identity: &Identity) -> Self {
        Self {
            user_name: lockstep_domain::text::fold(&identity.user_name),
            display_name: identity.display_name.as_deref().map(lockstep_domain::text::fold),
            external_id: identity.external_id.clone(),
            emails: fold_emails(&identity.emails),
        }
    }

    /// (slot, text) of the trigram rows.
    pub(crate) fn grams(&self) -> [(i64, Option<&str>); 4] {
        let emails = Some(self.emails.as_str()).filter(|e| !e.is_empty());
        [
            (0, Some(self.user_name.as_str())),
            (1, self.display_name.as_deref()),
            (2, self.external_id.as_deref()),
            (EMAIL_SLOT, emails),
        ]
    }

    /// Which trigram slots have rows (bit per slot).
    pub(crate) fn indexed(&self) -> i64 {
        self.grams()
            .iter()
            .filter(|(_, text)| text.is_some_and(|t| !t.is_empty()))
            .fold(0, |m, (slot, _)| m | 1 << slot)
    }

    /// Rewrites the e-mail rows of identity `seq` and lists it as due for
    /// new trigram rows (see `identity_grams_due`).
    pub(crate) fn reindex(
        &self,
        tx: &rusqlite::Connection,
        seq: i64,
        old: Option<&SearchKeys>,
    ) -> StoreResult<()> {
        let run = |sql: &str, p: &[&dyn rusqlite::ToSql]| tx.cached_exec(sql, p).map(|_| ()).map_err(backend);
        if old.is_none_or(|old| old.emails != self.emails) {
            if old.is_some() {
                run("DELETE FROM identity_emails WHERE identity = ?1", &[&seq])?;
            }
            for email in self.emails.split('\n').filter(|e| !e.is_empty()) {
                // (an address containing a newline is indexed in pieces: it can
                // then only be found by a filter that also matches a piece)
                run(
                    "INSERT OR IGNORE INTO identity_emails (identity, value_lc) VALUES (?1, ?2)",
                    &[&seq, &email],
                )?;
            }
        }
        if old.is_none_or(|old| old.grams() != self.grams()) {
            // Already listed: its rows are still those of when it was first.
            let indexed = old.map_or(0, SearchKeys::indexed);
            run(
                "INSERT OR IGNORE INTO identity_grams_due (seq, indexed) VALUES (?1, ?2)",
                &[&seq, &indexed],
            )?;
        }
        Ok(())
    }
}

/// Rewrites the trigram rows of every identity listed as due, if at least
/// `at_least` are, inside the caller's transaction; how many it rewrote.
pub(crate) fn write_due_grams(tx: &rusqlite::Connection, at_least: i64) -> StoreResult<usize> {
    let due: i64 =
        tx.cached_row("SELECT COUNT(*) FROM identity_grams_due", [], |r| r.get(0)).map_err(backend)?;
    if due == 0 || due < at_least {
        return Ok(0);
    }
    let rows = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT d.seq, d.indexed, i.user_name_lc, i.display_name_lc, i.external_id, i.emails
                 FROM identity_grams_due d JOIN identities i ON i.seq = d.seq ORDER BY d.seq",
            )
            .map_err(backend)?;
        stmt.query_map([], |r| {
            let emails: Option<String> = r.get(5)?;
            let keys = SearchKeys::stored(r.get(2)?, r.get(3)?, r.get(4)?, emails.as_deref());
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, keys))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(backend)?
    };
    for (seq, indexed, keys) in rows {
        for slot in (0..IDENTITY_SLOTS).filter(|slot| indexed & (1 << slot) != 0) {
            tx.cached_exec("DELETE FROM identity_grams WHERE rowid = ?1", [seq * IDENTITY_SLOTS + slot])
                .map_err(backend)?;
        }
        for (slot, text) in keys.grams() {
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                tx.cached_exec(
                    "INSERT INTO identity_grams (rowid, text) VALUES (?1, ?2)",
                    params![seq * IDENTITY_SLOTS + slot, text],
                )
                .map_err(backend)?;
            }
        }
    }
    tx.cached_exec("DELETE FROM identity_grams_due", []).map_err(backend)?;
    Ok(usize::try_from(due).unwrap_or(0))
}
