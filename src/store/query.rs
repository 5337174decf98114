//! Reads: current versions, old versions, history and search pages. Reads never block writers.

use std::sync::Arc;

use sqlx::AssertSqlSafe;

use super::tx::bind_all;
use super::{Bind, Filter, Store, Version, on_backend};
use crate::error::Result;

type VersionRow = (String, String, i64, i64, bool, String, Vec<u8>);

fn version(row: VersionRow) -> Version {
    let (rtype, id, version, last_updated, deleted, method, body) = row;
    Version { rtype, id, version, last_updated, deleted, method, body }
}

/// Which history a `_history` interaction lists.
#[derive(Debug, Clone)]
pub enum HistoryScope {
    Instance { rtype: String, id: String },
    Type(String),
    System,
}

#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub scope: HistoryScope,
    /// Only versions written at or after this instant (ms).
    pub since: Option<i64>,
    /// Only the version of each resource that was current at this instant (ms).
    pub at: Option<i64>,
    /// Keyset cursor: only versions written before this history key.
    pub before: Option<i64>,
    pub count: i64,
}

impl Store {
    /// The current row of a resource, deleted or not.
    pub async fn read(&self, rtype: &str, id: &str) -> Result<Option<Arc<Version>>> {
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(rtype, id)) {
            return Ok(Some(hit));
        }
        let sql = "SELECT rtype, id, version, last_updated, deleted, 'GET', body FROM resource \
                   WHERE rtype = $1 AND id = $2";
        let row: Option<VersionRow> = on_backend!(self, pool => sqlx::query_as(sql)
            .bind(rtype).bind(id).fetch_optional(pool).await?);
        let found = row.map(|r| Arc::new(version(r)));
        if let (Some(cache), Some(v)) = (&self.cache, &found) {
            cache.put(v.clone());
        }
        Ok(found)
    }

    pub async fn vread(&self, rtype: &str, id: &str, ver: i64) -> Result<Option<Version>> {
        // A history row has no body while its version is current (`Tx::history`).
        let sql = "SELECT h.rtype, h.id, h.version, h.last_updated, h.method = 'DELETE', h.method, \
                   COALESCE(h.body, r.body) FROM resource r JOIN resource_history h ON h.rkey = r.rkey \
                   WHERE r.rtype = $1 AND r.id = $2 AND h.version = $3";
        let row: Option<VersionRow> = on_backend!(self, pool => sqlx::query_as(sql)
            .bind(rtype).bind(id).bind(ver).fetch_optional(pool).await?);
        Ok(row.map(version))
    }

    /// One page of history, newest first, with each entry's history key for the next cursor.
    pub async fn history(&self, q: &HistoryQuery) -> Result<Vec<(i64, Version)>> {
        let (mut conds, mut binds) = history_scope(&q.scope);
        if let Some(since) = q.since {
            binds.push(Bind::Int(since));
            conds.push(format!("h.last_updated >= ${}", binds.len()));
        }
        if let Some(at) = q.at {
            binds.push(Bind::Int(at));
            let n = binds.len();
            conds.push(format!(
                "h.hkey IN (SELECT MAX(hkey) FROM resource_history WHERE last_updated <= ${n} GROUP BY rkey)"
            ));
        }
        if let Some(before) = q.before {
            binds.push(Bind::Int(before));
            conds.push(format!("h.hkey < ${}", binds.len()));
        }
        // A literal limit, not a parameter (see `Store::search`).
        let sql = format!(
            "SELECT h.hkey, h.rtype, h.id, h.version, h.last_updated, h.method = 'DELETE', h.method, \
             COALESCE(h.body, (SELECT r.body FROM resource r WHERE r.rkey = h.rkey)) \
             FROM resource_history h WHERE {} ORDER BY h.hkey DESC LIMIT {}",
            conds.join(" AND "),
            q.count
        );
        type Row = (i64, String, String, i64, i64, bool, String, Vec<u8>);
        let rows: Vec<Row> = on_backend!(self, pool =>
            bind_all!(sqlx::query_as(AssertSqlSafe(sql.clone())), binds.iter()).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(|(hkey, rtype, id, ver, lu, deleted, method, body)| {
                (hkey, version((rtype, id, ver, lu, deleted, method, body)))
            })
            .collect())
    }

    /// Number of versions in an instance's history (the only history total that is cheap).
    pub async fn history_count(&self, rtype: &str, id: &str) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM resource_history \
                   WHERE rkey = (SELECT rkey FROM resource WHERE rtype = $1 AND id = $2)";
        let n: (i64,) =
            on_backend!(self, pool => sqlx::query_as(sql).bind(rtype).bind(id).fetch_one(pool).await?);
        Ok(n.0)
    }

    /// The (type, id) targets of the reference index rows of `rkeys` for parameters `pids`.
    pub async fn reference_targets(&self, rkeys: &[i64], pids: &[i32]) -> Result<Vec<(String, String)>> {
        if rkeys.is_empty() || pids.is_empty() {
            return Ok(Vec::new());
        }
        let mut binds: Vec<Bind> = rkeys.iter().map(|k| Bind::Int(*k)).collect();
        let keys: Vec<String> = (1..=rkeys.len()).map(|i| format!("${i}")).collect();
        let params: Vec<String> = pids
            .iter()
            .map(|p| {
                binds.push(Bind::Int((*p).into()));
                format!("${}", binds.len())
            })
            .collect();
        // `+x.pid`: see `search::sort` — the lookup must go by rkey.
        let sql = format!(
            "SELECT DISTINCT x.target_type, x.target_id FROM idx_reference x WHERE x.rkey IN ({}) \
             AND +x.pid IN ({}) AND x.target_type IS NOT NULL AND x.target_id IS NOT NULL",
            keys.join(", "),
            params.join(", ")
        );
        let rows: Vec<(String, String)> = on_backend!(self, pool =>
            bind_all!(sqlx::query_as(AssertSqlSafe(sql.clone())), binds.iter()).fetch_all(pool).await?);
        Ok(rows)
    }

    /// A count statement the planner wrote in full (over index rows only).
    pub async fn count_sql(&self, sql: &str, binds: &[Bind]) -> Result<i64> {
        let n: (i64,) = on_backend!(self, pool =>
            bind_all!(sqlx::query_as(AssertSqlSafe(sql.to_string())), binds.iter()).fetch_one(pool).await?);
        Ok(n.0)
    }

    pub async fn count(&self, filter: &Filter) -> Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM resource r WHERE ({}) AND NOT r.deleted", filter.sql);
        let n: (i64,) = on_backend!(self, pool =>
            bind_all!(sqlx::query_as(AssertSqlSafe(sql.clone())), filter.binds.iter()).fetch_one(pool).await?);
        Ok(n.0)
    }
}

fn history_scope(scope: &HistoryScope) -> (Vec<String>, Vec<Bind>) {
    match scope {
        HistoryScope::Instance { rtype, id } => (
            vec!["h.rkey = (SELECT rkey FROM resource WHERE rtype = $1 AND id = $2)".into()],
            vec![Bind::Text(rtype.clone()), Bind::Text(id.clone())],
        ),
        HistoryScope::Type(rtype) => (vec!["h.rtype = $1".into()], vec![Bind::Text(rtype.clone())]),
        HistoryScope::System => (vec!["1 = 1".into()], vec![]),
    }
}
