//! Groups and memberships in `directory.db`.

use lockstep_domain::{Group, GroupId, IdentityId, Timestamp};
use lockstep_store::{CommittedGroup, GroupPage, GroupQuery, GroupWrite, StoreError, StoreResult};
use rusqlite::{OptionalExtension, params};

use crate::conn::Cached;
use crate::conn::Pool;
use crate::conn::backend;
use crate::directory::append_events;
use lockstep_store::codec::{parse, seq_to_sql};

/// A group write inside an open transaction.
pub(crate) fn write_group(tx: &rusqlite::Connection, write: GroupWrite) -> StoreResult<CommittedGroup> {
    if write.events.is_empty() {
        return Err(StoreError::Backend("a directory write must record at least one change".into()));
    }
    let id = write.id.to_string();
    let found: Option<(i64, i64, String)> = tx
        .cached_row("SELECT seq, version, display_name_lc FROM groups WHERE id = ?1", [&id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .map_err(backend)?;
    let found_version = found.as_ref().map(|f| f.1.unsigned_abs());
    if found_version != write.expected_version {
        return Err(StoreError::VersionMismatch { expected: write.expected_version, found: found_version });
    }
    let new_name = write.group.as_ref().map(|g| lockstep_domain::text::fold(&g.display_name));
    if let Some((seq, _, old)) = &found
        && new_name.as_ref() != Some(old)
    {
        tx.cached_exec("DELETE FROM group_grams WHERE rowid = ?1", [seq]).map_err(backend)?;
    }
    tx.cached_exec("DELETE FROM group_members WHERE group_id = ?1", [&id]).map_err(backend)?;
    let group = match write.group {
        None => {
            tx.cached_exec("DELETE FROM groups WHERE id = ?1", [&id]).map_err(backend)?;
            None
        }
        Some(mut group) => {
            group.id = write.id;
            group.members.sort();
            group.members.dedup();
            group.version = write.expected_version.map_or(1, |v| v + 1);
            tx.cached_exec("INSERT INTO groups (id, display_name, display_name_lc, external_id, version, created, modified, source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name,
                    display_name_lc = excluded.display_name_lc, external_id = excluded.external_id,
                    version = excluded.version, modified = excluded.modified",
                params![
                    id,
                    group.display_name,
                    lockstep_domain::text::fold(&group.display_name),
                    group.external_id,
                    seq_to_sql(group.version),
                    group.created.micros(),
                    group.modified.micros(),
                    group.source.as_str(),
                ],
            )
            .map_err(backend)?;
            if found.as_ref().map(|f| &f.2) != new_name.as_ref() {
                let seq: i64 = tx
                    .cached_row("SELECT seq FROM groups WHERE id = ?1", [&id], |r| r.get(0))
                    .map_err(backend)?;
                tx.cached_exec(
                    "INSERT INTO group_grams (rowid, text) VALUES (?1, ?2)",
                    params![seq, new_name],
                )
                .map_err(backend)?;
            }
            let mut live = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM identities WHERE id = ?1 AND live = 1)")
                .map_err(backend)?;
            let mut insert = tx
                .prepare_cached("INSERT INTO group_members (group_id, identity) VALUES (?1, ?2)")
                .map_err(backend)?;
            for member in &group.members {
                let member_id = member.to_string();
                let exists: bool = live.query_row([&member_id], |r| r.get(0)).map_err(backend)?;
                if !exists {
                    return Err(StoreError::NotFound(format!("identity {member}")));
                }
                insert.execute(params![id, member_id]).map_err(backend)?;
            }
            Some(group)
        }
    };
    let events = append_events(tx, write.at, &write.origin, write.events)?;
    if let Some(state) = &write.state {
        crate::directory::write_source_state(tx, state)?;
    }
    Ok(CommittedGroup { group, events })
}

type GroupRow = (String, String, Option<String>, i64, i64, i64, String);

fn members(c: &rusqlite::Connection, id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT m.identity FROM group_members m JOIN identities i ON i.id = m.identity
         WHERE m.group_id = CAST(?1 AS TEXT) AND i.live = 1 ORDER BY m.identity",
    )?;
    stmt.query_map([id], |r| r.get(0))?.collect()
}

fn decode(row: GroupRow, members: Vec<String>) -> StoreResult<Group> {
    let (id, display_name, external_id, version, created, modified, source) = row;
    Ok(Group {
        id: parse::<GroupId>("group id", &id)?,
        display_name,
        external_id,
        source: lockstep_domain::SourceId::new(source),
        members: members.iter().map(|m| parse::<IdentityId>("identity id", m)).collect::<StoreResult<_>>()?,
        version: version.unsigned_abs(),
        created: Timestamp(created),
        modified: Timestamp(modified),
    })
}

const COLUMNS: &str = "id, display_name, external_id, version, created, modified, source";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GroupRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

pub(crate) fn group(pool: &Pool, id: GroupId) -> StoreResult<Option<Group>> {
    let found = pool.read(|c| {
        let sql = format!("SELECT {COLUMNS} FROM groups WHERE id = ?1");
        match c.cached_row(&sql, [id.to_string()], row).optional()? {
            Some(r) => {
                let m = members(c, &r.0)?;
                Ok(Some((r, m)))
            }
            None => Ok(None),
        }
    })?;
    found.map(|(r, m)| decode(r, m)).transpose()
}

pub(crate) fn source_groups(
    pool: &Pool,
    source: &lockstep_domain::SourceId,
    keys: Option<&[String]>,
) -> StoreResult<Vec<Group>> {
    let mut out = Vec::new();
    let chunks: Vec<Option<&[String]>> = match keys {
        None => vec![None],
        Some(keys) => keys.chunks(500).map(Some).collect(),
    };
    for chunk in chunks {
        let filter = chunk
            .map_or_else(String::new, |c| format!(" AND external_id IN ({})", vec!["?"; c.len()].join(", ")));
        let sql = format!(
            "SELECT {COLUMNS} FROM groups INDEXED BY groups_source WHERE source = CAST(? AS TEXT) AND source <> 'scim'{filter} ORDER BY seq"
        );
        let args: Vec<&str> =
            std::iter::once(source.as_str()).chain(chunk.unwrap_or(&[]).iter().map(String::as_str)).collect();
        let rows = pool.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), row)?
                .collect::<Result<Vec<_>, _>>()?;
            let mut with_members = Vec::with_capacity(rows.len());
            for r in rows {
                let m = members(c, &r.0)?;
                with_members.push((r, m));
            }
            Ok(with_members)
        })?;
        for (r, m) in rows {
            out.push(decode(r, m)?);
        }
    }
    Ok(out)
}

pub(crate) fn list_groups(pool: &Pool, query: &GroupQuery) -> StoreResult<GroupPage> {
    let compiled = crate::search::compile(&query.filter);
    let cond = compiled.sql;
    let page_sql = format!(
        "SELECT {COLUMNS} FROM groups WHERE {cond} ORDER BY {} LIMIT {} OFFSET {}",
        crate::directory::order_by(&query.filter),
        query.limit,
        query.offset
    );
    let count_sql = format!("SELECT COUNT(*) FROM groups WHERE {cond}");
    let (total, rows) = pool.read(|c| {
        let args = rusqlite::params_from_iter(compiled.args.iter());
        let mut stmt = c.prepare_cached(&page_sql)?;
        let rows = stmt.query_map(args.clone(), row)?.collect::<Result<Vec<_>, _>>()?;
        let total: i64 = if query.offset == 0 && rows.len() < query.limit {
            i64::try_from(rows.len()).unwrap_or(i64::MAX)
        } else {
            c.cached_row(&count_sql, args, |r| r.get(0))?
        };
        let mut with_members = Vec::with_capacity(rows.len());
        for r in rows {
            let m = members(c, &r.0)?;
            with_members.push((r, m));
        }
        Ok((total, with_members))
    })?;
    Ok(GroupPage {
        total: usize::try_from(total).unwrap_or(0),
        items: rows.into_iter().map(|(r, m)| decode(r, m)).collect::<StoreResult<_>>()?,
    })
}

pub(crate) fn groups_of(pool: &Pool, identity: IdentityId) -> StoreResult<Vec<(GroupId, String)>> {
    decode_memberships(pool.read(|c| memberships(c, &identity.to_string()))?)
}

/// Raw (group id, displayName) rows of one identity, on a given connection.
pub(crate) fn memberships(
    c: &rusqlite::Connection,
    identity: &str,
) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = c.prepare_cached(
        "SELECT g.id, g.display_name FROM group_members m JOIN groups g ON g.id = m.group_id
         WHERE m.identity = CAST(?1 AS TEXT) ORDER BY g.display_name, g.id",
    )?;
    stmt.query_map([identity], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

pub(crate) fn decode_memberships(rows: Vec<(String, String)>) -> StoreResult<Vec<(GroupId, String)>> {
    rows.into_iter().map(|(id, name)| Ok((parse::<GroupId>("group id", &id)?, name))).collect()
}

/// Identities read per statement when many are read together.
pub(crate) const IDS_PER_READ: usize = 500;

/// The statement reading the groups (identity, group id, displayName) of
/// the identities bound to `marks`, by group name: the whole-row read and
/// the lean read of claims share it.
pub(crate) fn memberships_of(marks: &str) -> String {
    format!(
        "SELECT m.identity, g.id, g.display_name FROM group_members m JOIN groups g ON g.id = m.group_id
         WHERE m.identity IN ({marks}) ORDER BY g.display_name, g.id"
    )
}

/// The lean read behind [`lockstep_store::DirectoryRead::claim_inputs`]:
/// four columns of each identity and its groups, decoded straight from the
/// rows (start-up reads a million of them; the whole identity rows cost
/// three times as much, mostly in copying text it does not need).
pub(crate) fn claim_inputs(
    c: &rusqlite::Connection,
    ids: &[lockstep_domain::IdentityId],
) -> rusqlite::Result<StoreResult<Vec<lockstep_store::ClaimInputs>>> {
    use lockstep_domain::{IdentityId, IdentityKind, RiskTier};
    use lockstep_store::ClaimInputs;
    let mut out: Vec<ClaimInputs> = Vec::with_capacity(ids.len());
    let mut at: std::collections::HashMap<IdentityId, usize> =
        std::collections::HashMap::with_capacity(ids.len());
    let text = |r: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<String> {
        Ok(r.get_ref(i)?.as_str()?.to_owned())
    };
    for chunk in ids.chunks(IDS_PER_READ) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let keys: Vec<String> = chunk.iter().map(ToString::to_string).collect();
        let mut rows = Vec::with_capacity(chunk.len());
        let sql = format!("SELECT id, user_name, kind, risk_tier FROM identities WHERE id IN ({marks})");
        let mut stmt = c.prepare_cached(&sql)?;
        let mut found = stmt.query(rusqlite::params_from_iter(keys.iter()))?;
        while let Some(r) = found.next()? {
            let decoded = (|| -> StoreResult<ClaimInputs> {
                let field = |i: usize| r.get_ref(i).and_then(|v| v.as_str_or_null().map_err(Into::into));
                let field = |i: usize| field(i).map_err(crate::conn::backend);
                Ok(ClaimInputs {
                    id: parse::<IdentityId>("identity id", field(0)?.unwrap_or_default())?,
                    user_name: field(1)?.unwrap_or_default().to_owned(),
                    kind: parse::<IdentityKind>("identity kind", field(2)?.unwrap_or_default())?,
                    risk_tier: field(3)?.map(|t| parse::<RiskTier>("risk tier", t)).transpose()?,
                    groups: Vec::new(),
                })
            })();
            match decoded {
                Ok(inputs) => rows.push(inputs),
                Err(e) => return Ok(Err(e)),
            }
        }
        // The caller's order, not the index's.
        let mut by_id: std::collections::HashMap<IdentityId, ClaimInputs> =
            rows.into_iter().map(|r| (r.id, r)).collect();
        for id in chunk {
            if let Some(inputs) = by_id.remove(id) {
                at.insert(*id, out.len());
                out.push(inputs);
            }
        }
        let mut stmt = c.prepare_cached(&memberships_of(&marks))?;
        let mut members = stmt.query(rusqlite::params_from_iter(keys.iter()))?;
        while let Some(r) = members.next()? {
            let identity = r.get_ref(0)?.as_str()?;
            let group = r.get_ref(1)?.as_str()?;
            let (identity, group) =
                match (parse::<IdentityId>("identity id", identity), parse::<GroupId>("group id", group)) {
                    (Ok(i), Ok(g)) => (i, g),
                    (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
                };
            if let Some(&slot) = at.get(&identity) {
                out[slot].groups.push((group, text(r, 2)?));
            }
        }
    }
    Ok(Ok(out))
}
