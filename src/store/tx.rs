//! The write transaction: everything one interaction changes commits or rolls back together.

use sqlx::{AssertSqlSafe, Postgres, Transaction};

use std::sync::Arc;

use super::cache::Cache;
use super::direct::{Param, Session};
use super::{Bind, Current, Filter, IndexRows, Store, Version};
use crate::error::{Error, Result};

pub enum Conn {
    /// Direct calls on the writer connection (`direct.rs`): no hand-off per statement.
    Sqlite(Session),
    Postgres(Transaction<'static, Postgres>),
}

/// One write transaction, and what it wrote (published to the read cache on commit).
pub struct Tx {
    pub(super) conn: Conn,
    pub(super) cache: Option<Arc<Cache>>,
    pub(super) written: Vec<Version>,
    /// Keys of the resources this transaction inserted.
    pub(super) inserted: Vec<i64>,
    /// Resources changed without their new version in `written`: dropped from the cache.
    pub(super) forget: Vec<(String, String)>,
}

/// The values of `binds`, borrowed for a direct SQLite call.
pub(super) fn params(binds: &[Bind]) -> Vec<Param<'_>> {
    binds.iter().map(Param::from).collect()
}

macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut q = $query;
        for b in $binds {
            q = match b {
                Bind::Text(s) => q.bind(s.clone()),
                Bind::OptText(s) => q.bind(s.clone()),
                Bind::OptInt(i) => q.bind(*i),
                Bind::OptReal(f) => q.bind(*f),
                Bind::Bytes(b) => q.bind(b.clone()),
                Bind::Int(i) => q.bind(*i),
                Bind::Real(f) => q.bind(*f),
            };
        }
        q
    }};
}
pub(crate) use bind_all;

type CurrentRow = (i64, i64, i64, bool);

/// Bound values per multi-row statement. sqlx looks up each SQLite parameter's name, and SQLite
/// finds a name by walking the statement's list of names: binding is quadratic in the count.
/// At 2000 values per statement that lookup was 18 % of a bulk import; at 256 it vanishes.
pub(super) const MAX_BINDS: usize = 256;
/// PostgreSQL's limit on bind parameters in one statement is 65535.
const PG_MAX_BINDS: usize = 30_000;

/// Multi-row INSERTs of index rows (`rkey, pid` and the table's `columns`).
pub(super) fn insert_statements(table: &str, columns: &str, rows: &[Vec<Bind>]) -> Vec<(String, Vec<Bind>)> {
    insert_rows(table, &format!("rkey, pid, {columns}"), rows)
}

/// Multi-row INSERTs in chunks of at most `MAX_BINDS` values, each with placeholders numbered
/// from `$1`.
fn insert_rows(table: &str, columns: &str, rows: &[Vec<Bind>]) -> Vec<(String, Vec<Bind>)> {
    let Some(width) = rows.first().map(Vec::len) else { return Vec::new() };
    rows.chunks((MAX_BINDS / width).max(1))
        .map(|chunk| {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let cells: Vec<String> = (1..=width).map(|c| format!("${}", i * width + c)).collect();
                    format!("({})", cells.join(", "))
                })
                .collect();
            let sql = format!("INSERT INTO {table} ({columns}) VALUES {}", values.join(", "));
            (sql, chunk.iter().flatten().cloned().collect())
        })
        .collect()
}

/// Shifts every `$N` placeholder by `offset`, to splice one statement's binds after another's.
pub fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '$' {
            let mut n = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                n.push(*d);
                chars.next();
            }
            match n.parse::<usize>() {
                Ok(n) => out.push_str(&(n + offset).to_string()),
                Err(_) => out.push_str(&n),
            }
        }
    }
    out
}

/// Where [`Tx::rollback_to`] returns to.
pub struct Savepoint {
    written: usize,
    inserted: Vec<i64>,
    forget: usize,
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        let (cache, forget, written) = (self.cache, self.forget, self.written);
        // What the commit publishes to the read cache, right after it commits.
        let publish = move || {
            if let Some(cache) = &cache {
                for (rtype, id) in &forget {
                    cache.forget(rtype, id);
                }
                for v in written {
                    cache.put(Arc::new(v));
                }
            }
        };
        match self.conn {
            // Published on the commit's own thread, so a caller that stops waiting cannot
            // leave the cache behind what was committed.
            Conn::Sqlite(s) => s.commit(publish).await?,
            Conn::Postgres(tx) => {
                tx.commit().await?;
                publish();
            }
        }
        Ok(())
    }

    /// Marks a point this transaction can roll back to without losing what came before (one
    /// HL7 message of a group commit that fails).
    pub async fn savepoint(&mut self) -> Result<Savepoint> {
        self.exec("SAVEPOINT hearth_part").await?;
        Ok(Savepoint {
            written: self.written.len(),
            inserted: self.inserted.clone(),
            forget: self.forget.len(),
        })
    }

    /// Keeps what was written since the savepoint.
    pub async fn release(&mut self, _: Savepoint) -> Result<()> {
        self.exec("RELEASE SAVEPOINT hearth_part").await
    }

    /// Undoes what was written since the savepoint, in the database and in what the commit will
    /// publish to the read cache.
    pub async fn rollback_to(&mut self, sp: Savepoint) -> Result<()> {
        self.exec("ROLLBACK TO SAVEPOINT hearth_part").await?;
        self.exec("RELEASE SAVEPOINT hearth_part").await?;
        self.written.truncate(sp.written);
        self.inserted = sp.inserted;
        self.forget.truncate(sp.forget);
        Ok(())
    }

    /// Runs SQL without parameters or results.
    async fn exec(&mut self, sql: &'static str) -> Result<()> {
        match &mut self.conn {
            Conn::Sqlite(s) => s.exec(sql)?,
            Conn::Postgres(tx) => {
                sqlx::query(sql).execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    /// Serializes writers that decide on the same condition (conditional create/update/delete)
    /// across nodes. SQLite has a single writer already.
    pub async fn lock(&mut self, key: i64) -> Result<()> {
        if let Conn::Postgres(tx) = &mut self.conn {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(key).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The current row, locked against concurrent writers until commit.
    pub async fn current(&mut self, rtype: &str, id: &str) -> Result<Option<Current>> {
        let row: Option<CurrentRow> = match &mut self.conn {
            Conn::Sqlite(s) => {
                let sql =
                    "SELECT rkey, version, last_updated, deleted FROM resource WHERE rtype = $1 AND id = $2";
                match s.query(sql, &[Param::Text(rtype), Param::Text(id)])?.into_iter().next() {
                    Some(row) => Some((row[0].int()?, row[1].int()?, row[2].int()?, row[3].int()? != 0)),
                    None => None,
                }
            }
            Conn::Postgres(tx) => {
                sqlx::query_as(
                    "SELECT rkey, version, last_updated, deleted FROM resource \
                     WHERE rtype = $1 AND id = $2 FOR UPDATE",
                )
                .bind(rtype)
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
            }
        };
        Ok(row.map(|(rkey, version, last_updated, deleted)| Current { rkey, version, last_updated, deleted }))
    }

    /// Records an HL7 v2 message inside this transaction, so it is recorded exactly when its
    /// writes are; `false` when it was accepted already (that record stays as it was).
    pub async fn hl7_record(&mut self, m: &super::hl7::Received) -> Result<bool> {
        match &mut self.conn {
            Conn::Sqlite(s) => {
                let binds = [
                    Param::Text(&m.sender),
                    Param::Text(&m.control_id),
                    Param::Text(&m.message_type),
                    Param::Int(m.received),
                    Param::Text(m.status),
                    Param::Text(&m.ack),
                    Param::Text(&m.raw),
                ];
                Ok(!s.query(super::hl7::RECORD, &binds)?.is_empty())
            }
            Conn::Postgres(tx) => {
                let row: Option<(String,)> = sqlx::query_as(super::hl7::RECORD)
                    .bind(&m.sender)
                    .bind(&m.control_id)
                    .bind(&m.message_type)
                    .bind(m.received)
                    .bind(m.status)
                    .bind(&m.ack)
                    .bind(&m.raw)
                    .fetch_optional(&mut **tx)
                    .await?;
                Ok(row.is_some())
            }
        }
    }

    /// The stored bytes of the current row (for PATCH, which edits what is there).
    pub async fn body(&mut self, rkey: i64) -> Result<Vec<u8>> {
        let sql = "SELECT body FROM resource WHERE rkey = $1";
        match &mut self.conn {
            Conn::Sqlite(s) => {
                match s.query(sql, &[Param::Int(rkey)])?.into_iter().next().and_then(|r| r.into_iter().next())
                {
                    Some(body) => body.blob(),
                    None => Err(Error::Store(sqlx::Error::RowNotFound)),
                }
            }
            Conn::Postgres(tx) => {
                let row: (Vec<u8>,) = sqlx::query_as(sql).bind(rkey).fetch_one(&mut **tx).await?;
                Ok(row.0)
            }
        }
    }

    /// Inserts a new current row; a concurrent insert of the same id fails with a unique
    /// violation, which the engine retries as an update.
    pub async fn insert(&mut self, rtype: &str, id: &str, last_updated: i64, body: &[u8]) -> Result<i64> {
        let sql = "INSERT INTO resource (rtype, id, version, last_updated, deleted, body) \
                   VALUES ($1, $2, 1, $3, FALSE, $4) RETURNING rkey";
        let rkey = match &mut self.conn {
            Conn::Sqlite(s) => {
                let binds =
                    [Param::Text(rtype), Param::Text(id), Param::Int(last_updated), Param::Blob(body)];
                match s.query(sql, &binds)?.first().and_then(|r| r.first()) {
                    Some(k) => k.int()?,
                    None => return Err(Error::Internal("INSERT … RETURNING gave no row".into())),
                }
            }
            Conn::Postgres(tx) => {
                let row: (i64,) = sqlx::query_as(sql)
                    .bind(rtype)
                    .bind(id)
                    .bind(last_updated)
                    .bind(body)
                    .fetch_one(&mut **tx)
                    .await?;
                row.0
            }
        };
        self.inserted.push(rkey);
        Ok(rkey)
    }

    pub async fn update(
        &mut self,
        rkey: i64,
        version: i64,
        last_updated: i64,
        deleted: bool,
        body: &[u8],
    ) -> Result<()> {
        let sql =
            "UPDATE resource SET version = $2, last_updated = $3, deleted = $4, body = $5 WHERE rkey = $1";
        match &mut self.conn {
            Conn::Sqlite(s) => {
                let binds = [
                    Param::Int(rkey),
                    Param::Int(version),
                    Param::Int(last_updated),
                    Param::Int(deleted.into()),
                    Param::Blob(body),
                ];
                s.execute(sql, &binds)?;
            }
            Conn::Postgres(tx) => {
                sqlx::query(sql)
                    .bind(rkey)
                    .bind(version)
                    .bind(last_updated)
                    .bind(deleted)
                    .bind(body)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn history(
        &mut self,
        rkey: i64,
        rtype: &str,
        id: &str,
        version: i64,
        last_updated: i64,
        method: &str,
        body: &[u8],
    ) -> Result<()> {
        let sql = "INSERT INTO resource_history (rkey, rtype, id, version, last_updated, method, body) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        match &mut self.conn {
            Conn::Sqlite(s) => {
                let binds = [
                    Param::Int(rkey),
                    Param::Text(rtype),
                    Param::Text(id),
                    Param::Int(version),
                    Param::Int(last_updated),
                    Param::Text(method),
                    Param::Blob(body),
                ];
                s.execute(sql, &binds)?;
            }
            Conn::Postgres(tx) => {
                sqlx::query(sql)
                    .bind(rkey)
                    .bind(rtype)
                    .bind(id)
                    .bind(version)
                    .bind(last_updated)
                    .bind(method)
                    .bind(body)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        // Every write records history, so this is where the transaction learns what it wrote.
        if self.cache.is_some() {
            let deleted = method == "DELETE";
            self.written.push(Version {
                rtype: rtype.into(),
                id: id.into(),
                version,
                last_updated,
                deleted,
                method: "GET".into(),
                body: body.to_vec(),
            });
        }
        Ok(())
    }

    /// Replaces the resource's index rows in every index table.
    pub async fn set_index(&mut self, store: &Store, rtype: &str, rkey: i64, rows: &IndexRows) -> Result<()> {
        // A row inserted by this transaction and not indexed yet has no index rows: save the
        // deletes. (A group commit may write the same resource again later in the transaction.)
        let fresh = self.inserted.contains(&rkey);
        self.inserted.retain(|k| *k != rkey);
        let mut statements = Vec::new();
        for (table, columns, table_rows) in rows.tables() {
            if !fresh {
                statements.push((format!("DELETE FROM {table} WHERE rkey = $1"), vec![Bind::Int(rkey)]));
            }
            let mut binds = Vec::with_capacity(table_rows.len());
            for (param, values) in table_rows {
                let pid = store.param_id(rtype, param).ok_or_else(|| {
                    Error::Internal(format!("search parameter {rtype}.{param} is not registered"))
                })?;
                let mut row = vec![Bind::Int(rkey), Bind::Int(pid.into())];
                row.extend(values);
                binds.push(row);
            }
            match self.conn {
                // A statement costs no round trip here: one prepared single-row INSERT per
                // table, run per row, beats a multi-row statement whose text (and so whose
                // preparation) changes with the row count.
                Conn::Sqlite(_) => {
                    let width = binds.first().map_or(0, Vec::len);
                    let placeholders: Vec<String> = (1..=width).map(|c| format!("${c}")).collect();
                    let sql = format!(
                        "INSERT INTO {table} (rkey, pid, {columns}) VALUES ({})",
                        placeholders.join(", ")
                    );
                    statements.extend(binds.into_iter().map(|row| (sql.clone(), row)));
                }
                Conn::Postgres(_) => statements.extend(insert_statements(table, columns, &binds)),
            }
        }
        self.execute_all(statements).await
    }

    /// Runs the statements in order. PostgreSQL gets them as one statement of data-modifying
    /// CTEs — one round trip instead of up to a dozen; they share a snapshot, so a DELETE never
    /// sees the rows an INSERT beside it adds.
    async fn execute_all(&mut self, statements: Vec<(String, Vec<Bind>)>) -> Result<()> {
        let total: usize = statements.iter().map(|(_, b)| b.len()).sum();
        if let Conn::Postgres(tx) = &mut self.conn
            && statements.len() > 1
            && total < PG_MAX_BINDS
        {
            let mut parts = Vec::with_capacity(statements.len());
            let mut binds = Vec::with_capacity(total);
            for (i, (sql, b)) in statements.into_iter().enumerate() {
                parts.push(format!("s{i} AS ({})", renumber(&sql, binds.len())));
                binds.extend(b);
            }
            let sql = format!("WITH {} SELECT 1", parts.join(", "));
            bind_all!(sqlx::query(AssertSqlSafe(sql)), binds.iter()).execute(&mut **tx).await?;
            return Ok(());
        }
        self.execute_each(statements).await
    }

    /// Runs the statements one by one, in order.
    pub(super) async fn execute_each(&mut self, statements: Vec<(String, Vec<Bind>)>) -> Result<()> {
        for (sql, binds) in statements {
            match &mut self.conn {
                Conn::Sqlite(s) => {
                    s.execute(&sql, &params(&binds))?;
                    // SQLite runs on this task's thread: a long transaction lets other tasks
                    // run now and then instead of holding the worker to the end.
                    tokio::task::coop::consume_budget().await;
                }
                Conn::Postgres(tx) => {
                    bind_all!(sqlx::query(AssertSqlSafe(sql.clone())), binds.iter())
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Ids of the live resources of `rtype` matching `filter`, at most `limit` of them: what a
    /// conditional interaction needs to decide between its 0/1/many outcomes.
    pub async fn matching(&mut self, rtype: &str, filter: &Filter, limit: i64) -> Result<Vec<(i64, String)>> {
        let n = filter.binds.len();
        // A literal limit, not a parameter (see `Store::search`).
        let sql = format!(
            "SELECT r.rkey, r.id FROM resource r WHERE ({}) AND r.rtype = ${} AND NOT r.deleted \
             ORDER BY r.rkey LIMIT {limit}",
            filter.sql,
            n + 1,
        );
        match &mut self.conn {
            Conn::Sqlite(s) => {
                let mut binds = params(&filter.binds);
                binds.push(Param::Text(rtype));
                s.query(&sql, &binds)?
                    .into_iter()
                    .map(|row| {
                        let mut row = row.into_iter();
                        let rkey = row.next().map(|v| v.int()).transpose()?;
                        let id = row.next().map(|v| v.text()).transpose()?;
                        rkey.zip(id).ok_or_else(|| Error::Internal("matching: short row".into()))
                    })
                    .collect()
            }
            Conn::Postgres(tx) => {
                let rows: Vec<(i64, String)> =
                    bind_all!(sqlx::query_as(AssertSqlSafe(sql.clone())), filter.binds.iter())
                        .bind(rtype)
                        .fetch_all(&mut **tx)
                        .await?;
                Ok(rows)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbers_placeholders() {
        assert_eq!(renumber("x = $1 AND y IN ($2, $10)", 5), "x = $6 AND y IN ($7, $15)");
        let stmts = insert_statements(
            "idx_uri",
            "uri",
            &vec![vec![Bind::Int(1), Bind::Int(2), Bind::Text("u".into())]; 3],
        );
        assert_eq!(stmts.len(), 1);
        assert_eq!(
            stmts[0].0,
            "INSERT INTO idx_uri (rkey, pid, uri) VALUES ($1, $2, $3), ($4, $5, $6), ($7, $8, $9)"
        );
        assert_eq!(stmts[0].1.len(), 9);
    }
}
