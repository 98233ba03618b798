//! Filters compiled to SQL that each index can answer.
//!
//! Every comparison becomes a self-contained boolean term that is never
//! NULL (a nullable column is guarded with `IS NOT NULL`), so `NOT` keeps
//! the two-valued meaning of [`Filter::holds`], the reference semantics.
//! Equality, order and prefix comparisons are ranges on a B-tree index;
//! substring and suffix comparisons of three or more characters are first
//! narrowed by a trigram (FTS5) index and then checked exactly, because a
//! trigram match is only a candidate.

use lockstep_store::{Filter, GroupField, IdentityField, SearchField, TextOp};
use rusqlite::types::Value;

/// Trigram rows per identity: `rowid = seq * IDENTITY_SLOTS + slot`.
pub(crate) const IDENTITY_SLOTS: i64 = 4;
/// Slot of the joined e-mail addresses in `identity_grams`.
pub(crate) const EMAIL_SLOT: i64 = 3;

/// A trigram table and where one field's rows are in it.
#[derive(Clone, Copy)]
pub(crate) struct Grams {
    table: &'static str,
    /// Rows per key: `rowid = key * slots + slot`.
    slots: i64,
    slot: i64,
    /// The table of keys whose trigram rows are not current yet (they are
    /// written behind the commit, in bulk): always candidates.
    due: Option<&'static str>,
}

impl Grams {
    /// The identity field in trigram slot `slot`.
    pub(crate) const fn identity(slot: i64) -> Self {
        Self { table: "identity_grams", slots: IDENTITY_SLOTS, slot, due: Some("identity_grams_due") }
    }
}

/// How one field is stored.
pub(crate) enum Column {
    /// A column of the row itself.
    Plain {
        /// SQL expression (folded already when the field ignores case).
        expr: &'static str,
        /// Whether it can be NULL.
        nullable: bool,
        /// Where its trigrams are, when substrings are indexed.
        grams: Option<Grams>,
        /// The condition of a partial index on the column, spelled out in
        /// every comparison that cannot match the value it excludes (if
        /// any): SQLite uses a partial index only where the query states
        /// its condition, also inside an OR.
        partial: Option<Partial>,
    },
    /// The identity's e-mail table.
    Emails,
    /// Derived from `status`.
    Active,
}

/// A partial index's condition and the one value it leaves out.
#[derive(Clone, Copy)]
pub(crate) struct Partial {
    condition: &'static str,
    excludes: Option<&'static str>,
}

/// A field of a table [`compile`] can search.
pub(crate) trait Searchable: SearchField + Copy {
    fn column(self) -> Column;
}

impl Searchable for IdentityField {
    fn column(self) -> Column {
        let plain = |expr, nullable, slot: Option<i64>, partial| Column::Plain {
            expr,
            nullable,
            grams: slot.map(Grams::identity),
            partial,
        };
        match self {
            IdentityField::Id => plain("id", false, None, None),
            // Listings are of live identities: the unique index of live names.
            IdentityField::UserName => {
                plain("user_name_lc", false, Some(0), Some(Partial { condition: "live = 1", excludes: None }))
            }
            IdentityField::DisplayName => plain("display_name_lc", true, Some(1), None),
            IdentityField::ExternalId => plain("external_id", true, Some(2), None),
            IdentityField::Email => Column::Emails,
            IdentityField::Active => Column::Active,
            IdentityField::Kind => plain(
                "kind",
                false,
                None,
                Some(Partial { condition: "kind <> 'human'", excludes: Some("human") }),
            ),
        }
    }
}

impl Searchable for GroupField {
    fn column(self) -> Column {
        let plain = |expr, nullable, grams| Column::Plain { expr, nullable, grams, partial: None };
        match self {
            GroupField::Id => plain("id", false, None),
            GroupField::DisplayName => plain(
                "display_name_lc",
                false,
                Some(Grams { table: "group_grams", slots: 1, slot: 0, due: None }),
            ),
            GroupField::ExternalId => plain("external_id", true, None),
        }
    }
}

/// A compiled `WHERE` term and its positional (`?`) arguments.
#[derive(Debug, Default)]
pub(crate) struct Compiled {
    pub(crate) sql: String,
    pub(crate) args: Vec<Value>,
}

/// Compiles `filter` into a term over a table whose row key is `seq`.
pub(crate) fn compile<F: Searchable>(filter: &Filter<F>) -> Compiled {
    let mut out = Compiled::default();
    out.sql = term(filter, &mut out.args);
    out
}

fn term<F: Searchable>(filter: &Filter<F>, args: &mut Vec<Value>) -> String {
    match filter {
        Filter::All => "1".to_owned(),
        Filter::Text { field, op, value } => text(field.column(), *op, &field.fold(value), args),
        Filter::Present(field) => present(field.column()),
        Filter::And(parts) if parts.is_empty() => "1".to_owned(),
        Filter::Or(parts) if parts.is_empty() => "0".to_owned(),
        Filter::And(parts) => join(parts, " AND ", args),
        Filter::Or(parts) => join(parts, " OR ", args),
        Filter::Not(part) => format!("NOT ({})", term(part, args)),
    }
}

fn join<F: Searchable>(parts: &[Filter<F>], sep: &str, args: &mut Vec<Value>) -> String {
    let terms: Vec<String> = parts.iter().map(|p| format!("({})", term(p, args))).collect();
    terms.join(sep)
}

fn present(column: Column) -> String {
    match column {
        Column::Plain { expr, nullable: true, .. } => format!("({expr} IS NOT NULL AND {expr} > '')"),
        Column::Plain { expr, nullable: false, .. } => format!("{expr} > ''"),
        Column::Emails => "seq IN (SELECT identity FROM identity_emails WHERE value_lc > '')".to_owned(),
        Column::Active => "1".to_owned(),
    }
}

fn text(column: Column, op: TextOp, value: &str, args: &mut Vec<Value>) -> String {
    match column {
        Column::Plain { expr, nullable, grams, partial } => {
            // Placeholders are positional: bind in the order they appear.
            let narrow = narrowing("seq", grams, op, value, args);
            let exact = compare(expr, op, value, args);
            let mut guarded = if nullable { format!("{expr} IS NOT NULL AND {exact}") } else { exact };
            if let Some(Partial { condition, excludes }) = partial
                && excludes.is_none_or(|excluded| !op.holds(excluded, value))
            {
                guarded = format!("{guarded} AND {condition}");
            }
            match narrow {
                Some(narrow) => format!("({narrow} AND {guarded})"),
                None => format!("({guarded})"),
            }
        }
        Column::Emails => {
            let exact = compare("value_lc", op, value, args);
            let grams = Some(Grams::identity(EMAIL_SLOT));
            let narrow = narrowing("identity", grams, op, value, args)
                .map(|n| format!(" AND {n}"))
                .unwrap_or_default();
            format!("seq IN (SELECT identity FROM identity_emails WHERE {exact}{narrow})")
        }
        Column::Active => match (op, value) {
            (TextOp::Eq, "true") => "status = 'active'".to_owned(),
            // Spelled as the partial index's condition so the index applies.
            (TextOp::Eq, "false") => "status <> 'active'".to_owned(),
            _ => format!(
                "({})",
                compare("(CASE WHEN status = 'active' THEN 'true' ELSE 'false' END)", op, value, args)
            ),
        },
    }
}

/// The exact comparison of `expr` (never NULL) with `value`.
fn compare(expr: &str, op: TextOp, value: &str, args: &mut Vec<Value>) -> String {
    // A bare `?` compared with `=` in a statement with an ORDER BY makes
    // SQLite 3.54 re-prepare the statement on every execution (its plan is
    // marked as depending on the bound value); a CAST keeps the index and
    // the plan cached. Measured: a quarter of the write path's CPU went to
    // re-parsing before this.
    let mut bind = |v: Value| {
        let placeholder = match v {
            Value::Integer(_) => "CAST(? AS INTEGER)",
            _ => "CAST(? AS TEXT)",
        };
        args.push(v);
        placeholder
    };
    match op {
        TextOp::Eq => format!("{expr} = {}", bind(Value::Text(value.to_owned()))),
        TextOp::Gt => format!("{expr} > {}", bind(Value::Text(value.to_owned()))),
        TextOp::Ge => format!("{expr} >= {}", bind(Value::Text(value.to_owned()))),
        TextOp::Lt => format!("{expr} < {}", bind(Value::Text(value.to_owned()))),
        TextOp::Le => format!("{expr} <= {}", bind(Value::Text(value.to_owned()))),
        _ if value.is_empty() => format!("{expr} IS NOT NULL"),
        TextOp::StartsWith => match successor(value) {
            // [prefix, successor(prefix)) is exactly the strings that start
            // with prefix, and it is an index range.
            Some(upper) => {
                let lower = bind(Value::Text(value.to_owned()));
                format!("{expr} >= {lower} AND {expr} < {}", bind(Value::Text(upper)))
            }
            None => format!("{expr} >= {}", bind(Value::Text(value.to_owned()))),
        },
        TextOp::Contains => format!("instr({expr}, {}) > 0", bind(Value::Text(value.to_owned()))),
        TextOp::EndsWith => {
            let n = i64::try_from(value.chars().count()).unwrap_or(i64::MAX);
            let len = bind(Value::Integer(n));
            format!("substr({expr}, -{len}) = {}", bind(Value::Text(value.to_owned())))
        }
    }
}

/// A trigram pre-selection of `key` (the identity's seq, under whatever
/// name the enclosing query gives it) for substring and suffix
/// comparisons of at least three characters (shorter ones have no trigram
/// to look up). Keys whose trigram rows are still due are candidates too:
/// their rows may be missing or stale, and the exact check decides.
fn narrowing(
    key: &str,
    grams: Option<Grams>,
    op: TextOp,
    value: &str,
    args: &mut Vec<Value>,
) -> Option<String> {
    let Grams { table, slots, slot, due } = grams?;
    if !matches!(op, TextOp::Contains | TextOp::EndsWith) || value.chars().count() < 3 {
        return None;
    }
    args.push(Value::Text(trigram_query(value)));
    let indexed = if slots == 1 {
        format!("SELECT rowid FROM {table} WHERE {table} MATCH ?")
    } else {
        format!("SELECT rowid / {slots} FROM {table} WHERE {table} MATCH ? AND rowid % {slots} = {slot}")
    };
    Some(match due {
        Some(due) => format!("{key} IN ({indexed} UNION ALL SELECT seq FROM {due})"),
        None => format!("{key} IN ({indexed})"),
    })
}

/// An FTS5 query matching rows that contain every trigram of `value` (at
/// most [`MAX_TRIGRAMS`] of them): a superset of the rows containing
/// `value`, which the exact comparison then narrows. The index keeps no
/// positions (`detail=none`, a smaller index and cheaper commits), so it
/// cannot answer the phrase itself.
fn trigram_query(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut grams: Vec<String> = Vec::new();
    for window in chars.windows(3) {
        let gram: String = window.iter().collect();
        if !grams.contains(&gram) {
            grams.push(gram);
        }
    }
    grams
        .iter()
        .take(MAX_TRIGRAMS)
        .map(|g| format!("\"{}\"", g.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Trigrams looked up per comparison; more narrow little further.
const MAX_TRIGRAMS: usize = 8;

/// The least string greater than every string that starts with `prefix`,
/// if any: the prefix with its last incrementable character incremented.
fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_bounds_the_prefix_range() {
        assert_eq!(successor("ab").as_deref(), Some("ac"));
        assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(successor("\u{10FFFF}"), None);
    }
}
