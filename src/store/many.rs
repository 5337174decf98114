//! Writing many resources in one transaction with few statements (bulk import).
//!
//! On PostgreSQL a statement is a round trip to the server; one resource written alone costs
//! about seven. Here a batch of a thousand resources costs a few dozen: current rows looked up
//! per type, new rows inserted many per statement, index rows of the whole batch gathered per
//! table. (On SQLite statements cost no round trip, `direct.rs`, but fewer, larger ones still
//! save per-statement work.)

use std::collections::HashMap;

use super::direct::Param;
use super::tx::{Conn, MAX_BINDS, cells, insert_statements, params};
use super::{Bind, Current, INDEX_TABLES, IndexRows, Store, Tx};
use crate::error::{Error, Result};

/// Rows per multi-row INSERT of resources or history, and ids per lookup or delete: see
/// `tx::MAX_BINDS` for why statements stay small.
const ROWS: usize = MAX_BINDS / 6;

/// One resource version of a batch write.
pub struct NewVersion<'a> {
    pub rtype: &'a str,
    pub id: &'a str,
    pub version: i64,
    pub last_updated: i64,
    pub body: &'a [u8],
    pub index: &'a IndexRows,
    /// Its key, when it exists already (an update).
    pub rkey: Option<i64>,
}

impl Tx {
    /// The current rows of many resources, locked as [`Tx::current`] locks one.
    pub async fn current_many(
        &mut self,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), (Current, Vec<u8>)>> {
        let mut by_type: HashMap<&str, Vec<&str>> = HashMap::new();
        for (t, id) in keys {
            by_type.entry(t).or_default().push(id);
        }
        let lock = if matches!(self.conn, Conn::Postgres(_)) { " FOR UPDATE" } else { "" };
        let mut out = HashMap::with_capacity(keys.len());
        for (rtype, ids) in by_type {
            for chunk in ids.chunks(ROWS) {
                let list: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "SELECT rkey, version, last_updated, deleted, id, body FROM resource \
                     WHERE rtype = $1 AND id IN ({}){lock}",
                    list.join(", ")
                );
                let mut binds = vec![Bind::Text(rtype.to_string())];
                binds.extend(chunk.iter().map(|id| Bind::Text(id.to_string())));
                for row in self.rows(&sql, &params(&binds)).await? {
                    let [rkey, version, last_updated, deleted, id, body] = cells(row)?;
                    let current = Current {
                        rkey: rkey.int()?,
                        version: version.int()?,
                        last_updated: last_updated.int()?,
                        deleted: deleted.int()? != 0,
                    };
                    out.insert((rtype.to_string(), id.text()?), (current, body.blob()?));
                }
            }
        }
        Ok(out)
    }

    /// Writes the versions: new current rows (or updates of existing ones), history rows and
    /// index rows. Returns each version's key, in order.
    pub async fn write_many(&mut self, store: &Store, versions: &[NewVersion<'_>]) -> Result<Vec<i64>> {
        let mut keys: Vec<Option<i64>> = versions.iter().map(|v| v.rkey).collect();
        let new: Vec<usize> = (0..versions.len()).filter(|i| versions[*i].rkey.is_none()).collect();
        for chunk in new.chunks(ROWS) {
            let mut values = Vec::with_capacity(chunk.len());
            let mut cells = Vec::with_capacity(chunk.len() * 4);
            for &i in chunk {
                let v = &versions[i];
                let n = cells.len();
                values.push(format!("(${}, ${}, 1, ${}, FALSE, ${})", n + 1, n + 2, n + 3, n + 4));
                cells.extend([
                    Param::Text(v.rtype),
                    Param::Text(v.id),
                    Param::Int(v.last_updated),
                    Param::Blob(v.body),
                ]);
            }
            let sql = format!(
                "INSERT INTO resource (rtype, id, version, last_updated, deleted, body) VALUES {} \
                 RETURNING rkey, rtype, id",
                values.join(", ")
            );
            let rows = self.insert_cells(&sql, &cells, true).await?;
            let mut at: HashMap<(String, String), usize> = chunk
                .iter()
                .map(|&i| ((versions[i].rtype.to_string(), versions[i].id.to_string()), i))
                .collect();
            for (rkey, rtype, id) in rows {
                let i = at
                    .remove(&(rtype.clone(), id.clone()))
                    .ok_or_else(|| Error::Internal(format!("insert returned an unknown row {rtype}/{id}")))?;
                keys[i] = Some(rkey);
                self.inserted.push(rkey);
            }
        }
        let keys: Vec<i64> = keys
            .into_iter()
            .map(|k| k.ok_or_else(|| Error::Internal("a new row got no key".into())))
            .collect::<Result<_>>()?;
        for (v, &rkey) in versions.iter().zip(&keys) {
            if v.rkey.is_some() {
                self.update(rkey, v.version, v.last_updated, false, v.body).await?;
                self.forget.push((v.rtype.to_string(), v.id.to_string()));
            }
        }
        self.history_many(versions, &keys).await?;
        self.index_many(store, versions, &keys).await?;
        Ok(keys)
    }

    async fn history_many(&mut self, versions: &[NewVersion<'_>], keys: &[i64]) -> Result<()> {
        let all: Vec<usize> = (0..versions.len()).collect();
        for chunk in all.chunks(ROWS) {
            let mut values = Vec::with_capacity(chunk.len());
            let mut cells = Vec::with_capacity(chunk.len() * 5);
            for &i in chunk {
                let v = &versions[i];
                let n = cells.len();
                // The body stays in `resource` alone while the version is current (`Tx::history`).
                values.push(format!(
                    "(${}, ${}, ${}, ${}, ${}, 'PUT', NULL)",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5
                ));
                cells.extend([
                    Param::Int(keys[i]),
                    Param::Text(v.rtype),
                    Param::Text(v.id),
                    Param::Int(v.version),
                    Param::Int(v.last_updated),
                ]);
            }
            let sql = format!(
                "INSERT INTO resource_history (rkey, rtype, id, version, last_updated, method, body) VALUES {}",
                values.join(", ")
            );
            self.insert_cells(&sql, &cells, false).await?;
        }
        Ok(())
    }

    /// Runs a multi-row INSERT, returning `(rkey, rtype, id)` rows when asked. Bodies are bound
    /// by reference, never copied.
    async fn insert_cells(
        &mut self,
        sql: &str,
        values: &[Param<'_>],
        returning: bool,
    ) -> Result<Vec<(i64, String, String)>> {
        if !returning {
            self.run(sql, values).await?;
            return Ok(Vec::new());
        }
        self.rows(sql, values)
            .await?
            .into_iter()
            .map(|row| {
                let [rkey, rtype, id] = cells(row)?;
                Ok((rkey.int()?, rtype.text()?, id.text()?))
            })
            .collect()
    }

    /// Index rows of the whole batch, per table; existing resources lose their old rows first.
    async fn index_many(&mut self, store: &Store, versions: &[NewVersion<'_>], keys: &[i64]) -> Result<()> {
        let old: Vec<i64> =
            versions.iter().zip(keys).filter(|(v, _)| v.rkey.is_some()).map(|(_, k)| *k).collect();
        let mut statements = Vec::new();
        let mut per_table: [Vec<Vec<Bind>>; 7] = Default::default();
        for (v, &rkey) in versions.iter().zip(keys) {
            let rows = v.index.inserts(rkey, |param| store.index_pid(v.rtype, param))?;
            for (all, these) in per_table.iter_mut().zip(rows) {
                all.extend(these);
            }
        }
        for ((table, columns), rows) in INDEX_TABLES.iter().zip(&per_table) {
            for chunk in old.chunks(ROWS) {
                let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                statements.push((
                    format!("DELETE FROM {table} WHERE rkey IN ({})", list.join(", ")),
                    chunk.iter().map(|k| Bind::Int(*k)).collect(),
                ));
            }
            statements.extend(insert_statements(table, columns, rows));
        }
        self.execute_each(statements).await
    }
}
