//! The write transaction: everything one interaction changes commits or rolls back together.

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{AssertSqlSafe, Column, Postgres, Row, Transaction, TypeInfo, ValueRef};

use std::sync::Arc;

use super::cache::Cache;
use super::direct::{Param, Session, Value};
use super::durable::Durable;
use super::{Bind, Current, Filter, INDEX_TABLES, IndexRows, Store, Version};
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

/// A row's N columns, or an error when it has another count.
pub(super) fn cells<const N: usize>(row: Vec<Value>) -> Result<[Value; N]> {
    let n = row.len();
    row.try_into().map_err(|_| Error::Internal(format!("expected {N} columns, got {n}")))
}

/// A PostgreSQL statement with `params` bound.
fn pg_query<'q>(sql: &str, params: &[Param<'q>]) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    let mut q = sqlx::query(AssertSqlSafe(sql.to_string()));
    for p in params {
        q = match *p {
            Param::NullText => q.bind(None::<&str>),
            Param::NullInt => q.bind(None::<i64>),
            Param::NullReal => q.bind(None::<f64>),
            Param::Bool(b) => q.bind(b),
            Param::Int(i) => q.bind(i),
            Param::Real(f) => q.bind(f),
            Param::Text(t) => q.bind(t),
            Param::Blob(b) => q.bind(b),
        };
    }
    q
}

/// A PostgreSQL row as the values SQLite rows come back as (booleans as 0/1).
fn pg_values(row: &PgRow) -> Result<Vec<Value>> {
    (0..row.columns().len())
        .map(|i| {
            if row.try_get_raw(i)?.is_null() {
                return Ok(Value::Null);
            }
            Ok(match row.column(i).type_info().name() {
                "INT8" => Value::Int(row.try_get::<i64, _>(i)?),
                "INT4" => Value::Int(row.try_get::<i32, _>(i)?.into()),
                "INT2" => Value::Int(row.try_get::<i16, _>(i)?.into()),
                "BOOL" => Value::Int(row.try_get::<bool, _>(i)?.into()),
                "FLOAT8" => Value::Real(row.try_get::<f64, _>(i)?),
                "BYTEA" => Value::Blob(row.try_get::<Vec<u8>, _>(i)?),
                _ => Value::Text(row.try_get::<String, _>(i)?),
            })
        })
        .collect()
}

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
    /// Commits and waits until the commit is durable.
    pub async fn commit(self) -> Result<()> {
        self.commit_before_sync().await?.wait().await
    }

    /// Commits, freeing the writer for the next transaction; the commit is durable (and may be
    /// answered) when the returned [`Durable`] resolves.
    pub async fn commit_before_sync(self) -> Result<Durable> {
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
            Conn::Sqlite(s) => s.commit(publish).await,
            Conn::Postgres(tx) => {
                tx.commit().await?;
                publish();
                Ok(Durable::at_commit())
            }
        }
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

    /// Runs a statement on either backend.
    pub(super) async fn run(&mut self, sql: &str, params: &[Param<'_>]) -> Result<()> {
        self.changed(sql, params).await.map(drop)
    }

    /// Runs a statement on either backend; the number of rows it changed.
    async fn changed(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        match &mut self.conn {
            Conn::Sqlite(s) => {
                let n = s.execute(sql, params)?;
                // SQLite runs on this task's thread: a long transaction lets other tasks run
                // now and then instead of holding the worker to the end.
                tokio::task::coop::consume_budget().await;
                Ok(n)
            }
            Conn::Postgres(tx) => Ok(pg_query(sql, params).execute(&mut **tx).await?.rows_affected()),
        }
    }

    /// Runs a query on either backend and returns its rows.
    pub(super) async fn rows(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Vec<Value>>> {
        match &mut self.conn {
            Conn::Sqlite(s) => s.query(sql, params),
            Conn::Postgres(tx) => {
                pg_query(sql, params).fetch_all(&mut **tx).await?.iter().map(pg_values).collect()
            }
        }
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
        let lock = if matches!(self.conn, Conn::Postgres(_)) { " FOR UPDATE" } else { "" };
        let sql = format!(
            "SELECT rkey, version, last_updated, deleted FROM resource WHERE rtype = $1 AND id = $2{lock}"
        );
        let Some(row) = self.rows(&sql, &[Param::Text(rtype), Param::Text(id)]).await?.into_iter().next()
        else {
            return Ok(None);
        };
        let [rkey, version, last_updated, deleted] = cells(row)?;
        Ok(Some(Current {
            rkey: rkey.int()?,
            version: version.int()?,
            last_updated: last_updated.int()?,
            deleted: deleted.int()? != 0,
        }))
    }

    /// Records an HL7 v2 message inside this transaction, so it is recorded exactly when its
    /// writes are; `false` when it was accepted already (that record stays as it was).
    pub async fn hl7_record(&mut self, m: &super::hl7::Received) -> Result<bool> {
        let params = [
            Param::Text(&m.sender),
            Param::Text(&m.control_id),
            Param::Text(&m.message_type),
            Param::Int(m.received),
            Param::Text(m.status),
            Param::Text(&m.ack),
            Param::Text(&m.raw),
        ];
        Ok(self.changed(super::hl7::INSERT, &params).await? == 1
            || self.changed(super::hl7::REPLACE, &params).await? == 1)
    }

    /// The stored bytes of the current row (for PATCH, which edits what is there).
    pub async fn body(&mut self, rkey: i64) -> Result<Vec<u8>> {
        let rows = self.rows("SELECT body FROM resource WHERE rkey = $1", &[Param::Int(rkey)]).await?;
        let [body] = cells(rows.into_iter().next().ok_or(Error::Store(sqlx::Error::RowNotFound))?)?;
        body.blob()
    }

    /// Inserts a new current row; a concurrent insert of the same id fails with a unique
    /// violation, which the engine retries as an update.
    pub async fn insert(&mut self, rtype: &str, id: &str, last_updated: i64, body: &[u8]) -> Result<i64> {
        let sql = "INSERT INTO resource (rtype, id, version, last_updated, deleted, body) \
                   VALUES ($1, $2, 1, $3, FALSE, $4)";
        let params = [Param::Text(rtype), Param::Text(id), Param::Int(last_updated), Param::Blob(body)];
        let rkey = match &mut self.conn {
            // The new row's key without RETURNING, which SQLite implements by buffering the
            // returned rows in a temporary table: ~30 % of this statement's time.
            Conn::Sqlite(s) => s.insert(sql, &params)?,
            Conn::Postgres(_) => {
                let rows = self.rows(&format!("{sql} RETURNING rkey"), &params).await?;
                let [rkey] = cells(
                    rows.into_iter()
                        .next()
                        .ok_or_else(|| Error::Internal("INSERT … RETURNING gave no row".into()))?,
                )?;
                rkey.int()?
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
        // The version being replaced takes its body into its history row, which held none while
        // it was current (see `history`). The caller holds the row already (`current` locks it
        // on PostgreSQL; SQLite has one writer), so the body moved is the one being replaced.
        let keep = "UPDATE resource_history SET body = (SELECT r.body FROM resource r WHERE r.rkey = $1) \
                    WHERE rkey = $1 AND version = (SELECT r.version FROM resource r WHERE r.rkey = $1) \
                    AND body IS NULL";
        self.run(keep, &[Param::Int(rkey)]).await?;
        let sql =
            "UPDATE resource SET version = $2, last_updated = $3, deleted = $4, body = $5 WHERE rkey = $1";
        let params = [
            Param::Int(rkey),
            Param::Int(version),
            Param::Int(last_updated),
            Param::Bool(deleted),
            Param::Blob(body),
        ];
        self.run(sql, &params).await
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
        // A version written is the current one: its body is in `resource` alone until the next
        // version moves it here (`update`), so a create writes its body once. A deletion's
        // empty body is its own.
        let deleted = method == "DELETE";
        let sql = if deleted {
            "INSERT INTO resource_history (rkey, rtype, id, version, last_updated, method, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        } else {
            "INSERT INTO resource_history (rkey, rtype, id, version, last_updated, method, body) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)"
        };
        let params = [
            Param::Int(rkey),
            Param::Text(rtype),
            Param::Text(id),
            Param::Int(version),
            Param::Int(last_updated),
            Param::Text(method),
            Param::Blob(body),
        ];
        self.run(sql, &params[..if deleted { 7 } else { 6 }]).await?;
        // Every write records history, so this is where the transaction learns what it wrote.
        if self.cache.is_some() {
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
        let pid = |param: &str| store.index_pid(rtype, param);
        let statements = match &mut self.conn {
            Conn::Sqlite(s) => {
                let n = sqlite_index(s, rkey, rows, fresh, pid)?;
                // As `changed` does for every statement it runs.
                for _ in 0..n {
                    tokio::task::coop::consume_budget().await;
                }
                return Ok(());
            }
            Conn::Postgres(_) => {
                let mut statements = Vec::new();
                for ((table, columns), binds) in INDEX_TABLES.iter().zip(rows.inserts(rkey, pid)?) {
                    if !fresh {
                        statements
                            .push((format!("DELETE FROM {table} WHERE rkey = $1"), vec![Bind::Int(rkey)]));
                    }
                    statements.extend(insert_statements(table, columns, &binds));
                }
                statements
            }
        };
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
            self.run(&sql, &params(&binds)).await?;
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
        let mut binds = params(&filter.binds);
        binds.push(Param::Text(rtype));
        self.rows(&sql, &binds)
            .await?
            .into_iter()
            .map(|row| {
                let [rkey, id] = cells(row)?;
                Ok((rkey.int()?, id.text()?))
            })
            .collect()
    }
}

/// SQLite's index rows: a statement costs no round trip here, so one prepared single-row INSERT
/// per table, each row bound straight from `rows` (multi-row INSERTs in chunks of fixed sizes
/// measured slower: ~90 against ~75 µs of index rows per VXU). The statements run.
fn sqlite_index(
    s: &mut Session,
    rkey: i64,
    rows: &IndexRows,
    fresh: bool,
    pid: impl Fn(&str) -> Result<i64>,
) -> Result<usize> {
    static INSERTS: std::sync::LazyLock<[String; 7]> = std::sync::LazyLock::new(|| {
        INDEX_TABLES.map(|(table, columns)| {
            let n = columns.split(',').count() + 2;
            let places: Vec<String> = (1..=n).map(|c| format!("${c}")).collect();
            format!("INSERT INTO {table} (rkey, pid, {columns}) VALUES ({})", places.join(", "))
        })
    });
    let mut run = 0;
    if !fresh {
        for (table, _) in INDEX_TABLES {
            s.execute(&format!("DELETE FROM {table} WHERE rkey = $1"), &[Param::Int(rkey)])?;
            run += 1;
        }
    }
    let mut params = Vec::with_capacity(10);
    rows.each(|table, param, values| {
        params.clear();
        params.extend([Param::Int(rkey), Param::Int(pid(param)?)]);
        params.extend_from_slice(values);
        s.execute(&INSERTS[table], &params)?;
        run += 1;
        Ok(())
    })?;
    Ok(run)
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
