//! SQLite write transactions by direct calls on a connection of their own.
//!
//! sqlx runs every SQLite statement on the connection's own thread: each statement is a hand-off
//! to that thread and a wake-up back, tens of microseconds on a busy 2-core machine, and a write
//! transaction runs a dozen or more statements in a row. Here the write connection is opened
//! with SQLite's own API and called on the transaction's thread: no hand-off per statement,
//! parameters bound by position without copying, statements prepared once and kept for the
//! life of the connection. The COMMIT runs there too: it writes its WAL frames in one go
//! (`walbuf.rs`) and does not wait for the disk (`durable.rs` syncs the WAL for many commits at
//! once). Only checkpoints, which do wait for it, run on a blocking thread.
//!
//! The sqlx writer pool (`connect.rs`) stays for the writes outside resource transactions
//! (auth, bulk jobs, migrations); SQLite's write lock orders the two connections.
//!
//! This is the only `unsafe` code in Hearth. What it relies on:
//! - the handle is used by one thread at a time: it is reached only through the writer's mutex;
//! - every statement is reset (with its bindings cleared) after each run, so none outlives the
//!   values bound to it, and finalized before the handle is closed.

use std::ffi::{CStr, CString, c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use libsqlite3_sys as ffi;
use sqlx::error::{DatabaseError, ErrorKind};
use tokio::sync::OwnedMutexGuard;

use super::Bind;
use super::durable::{Durable, WalSync};
use crate::error::{Error, Result};

/// A value bound to a statement, borrowed from the caller. NULLs keep their type: PostgreSQL
/// needs it (SQLite does not).
#[derive(Clone, Copy)]
pub enum Param<'a> {
    NullText,
    NullInt,
    NullReal,
    Bool(bool),
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl<'a> From<&'a Bind> for Param<'a> {
    fn from(b: &'a Bind) -> Param<'a> {
        match b {
            Bind::Text(s) => Param::Text(s),
            Bind::OptText(s) => s.as_deref().map_or(Param::NullText, Param::Text),
            Bind::Int(i) => Param::Int(*i),
            Bind::Real(f) => Param::Real(*f),
            Bind::OptInt(i) => i.map_or(Param::NullInt, Param::Int),
            Bind::OptReal(f) => f.map_or(Param::NullReal, Param::Real),
            Bind::Bytes(b) => Param::Blob(b),
        }
    }
}

impl From<Param<'_>> for Bind {
    fn from(p: Param<'_>) -> Bind {
        match p {
            Param::NullText => Bind::OptText(None),
            Param::NullInt => Bind::OptInt(None),
            Param::NullReal => Bind::OptReal(None),
            Param::Bool(b) => Bind::Int(b.into()),
            Param::Int(i) => Bind::Int(i),
            Param::Real(f) => Bind::Real(f),
            Param::Text(s) => Bind::Text(s.to_string()),
            Param::Blob(b) => Bind::Bytes(b.to_vec()),
        }
    }
}

/// A column value read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn int(&self) -> Result<i64> {
        match self {
            Value::Int(i) => Ok(*i),
            other => Err(Error::Internal(format!("expected an integer column, got {other:?}"))),
        }
    }

    pub fn text(self) -> Result<String> {
        match self {
            Value::Text(s) => Ok(s),
            other => Err(Error::Internal(format!("expected a text column, got {other:?}"))),
        }
    }

    /// A BLOB column (text is taken as its bytes, as sqlx does).
    pub fn blob(self) -> Result<Vec<u8>> {
        match self {
            Value::Blob(b) => Ok(b),
            Value::Text(s) => Ok(s.into_bytes()),
            other => Err(Error::Internal(format!("expected a blob column, got {other:?}"))),
        }
    }
}

/// An error SQLite returned, shaped as sqlx's so that callers (and `is_write_conflict`) see
/// one kind of database error whichever path ran the statement.
#[derive(Debug, thiserror::Error)]
#[error("(code: {code}) {message}")]
pub struct SqliteFailure {
    code: c_int,
    message: String,
}

impl DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => ErrorKind::UniqueViolation,
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

/// What the writer connection waits for another process's write lock (as configured in
/// `connect.rs`).
pub(super) const BUSY_TIMEOUT_MS: c_int = 10_000;

fn is_busy(e: &Error) -> bool {
    matches!(e, Error::Store(sqlx::Error::Database(d)) if d.code().is_some_and(|c| c.parse::<c_int>().is_ok_and(|c| c & 0xff == ffi::SQLITE_BUSY)))
}

/// A prepared statement and, for each of its parameters in SQLite's order, which bound value
/// (`$N` → N - 1) it takes.
struct Statement {
    raw: NonNull<ffi::sqlite3_stmt>,
    params: Vec<usize>,
}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: finalized once, while its connection is open (a connection drops its
        // statements before it closes), and never while running (each run resets it).
        unsafe { ffi::sqlite3_finalize(self.raw.as_ptr()) };
    }
}

/// The connection SQLite write transactions run on, opened here rather than by sqlx, and the
/// sync thread that makes its commits durable.
pub struct Writer {
    conn: Arc<tokio::sync::Mutex<Connection>>,
    sync: Arc<WalSync>,
}

/// An open SQLite handle and the statements prepared on it, kept from one transaction to the
/// next.
struct Connection {
    db: NonNull<ffi::sqlite3>,
    /// By SQL text, hashed for every statement run.
    statements: foldhash::HashMap<String, Statement>,
    /// Frames in the WAL after the last commit, as SQLite's WAL hook reports them. Boxed: the
    /// hook holds its address for the life of the handle (closed before the box is freed).
    wal_frames: Box<AtomicI32>,
    /// [`CHECKPOINT_FRAMES`], lower in tests.
    checkpoint_at: i32,
}

// SAFETY: the handle (opened without SQLite's own mutex) and its statements are used by one
// thread at a time: `Connection` is only reached through the writer's mutex.
unsafe impl Send for Connection {}

/// Distinct statements kept prepared: conditional matches and multi-row inserts vary their
/// text, and a long-running server must not keep each one for ever.
const MAX_STATEMENTS: usize = 256;

/// Run as prepared statements, kept like the others: `sqlite3_exec` parses its SQL every time.
const BEGIN: &str = "BEGIN IMMEDIATE";

/// WAL frames (pages) after a commit that start a checkpoint: SQLite's `wal_autocheckpoint`,
/// which the writer replaces with its own WAL hook. The next transaction waits for the
/// checkpoint, whose sync of the database file takes ~7 ms here: at 10 000 frames (SQLite's
/// default) that was 4 checkpoints a second under HL7 load. 40 000 (a WAL of up to 160 MiB)
/// won 4 of 6 paired runs, x8 median 1 724 → 1 856 msg/s.
const CHECKPOINT_FRAMES: i32 = 40_000;

/// SQLite's WAL hook, called after each commit with the WAL's size: noted, so that the
/// checkpoint runs after the commit, off the async runtime's thread ([`Session::commit`]).
unsafe extern "C" fn note_wal_size(
    frames: *mut std::ffi::c_void,
    _db: *mut ffi::sqlite3,
    _name: *const c_char,
    n: c_int,
) -> c_int {
    // SAFETY: the `AtomicI32` the connection registered, alive as long as its handle.
    unsafe { (*(frames as *const AtomicI32)).store(n, Ordering::Relaxed) };
    ffi::SQLITE_OK
}

impl Writer {
    /// Opens the write connection to the SQLite database at `path` (created and migrated
    /// already, in WAL mode).
    pub async fn open(path: &Path) -> Result<Writer> {
        let wal = {
            let mut p = path.as_os_str().to_owned();
            p.push("-wal");
            PathBuf::from(p)
        };
        let path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::Internal(format!("database path {} has a NUL byte", path.display())))?;
        let conn = tokio::task::spawn_blocking(move || Connection::open(&path))
            .await
            .map_err(|e| Error::Internal(format!("open task: {e}")))??;
        let sync = Arc::new(WalSync::start(wal)?);
        Ok(Writer { conn: Arc::new(tokio::sync::Mutex::new(conn)), sync })
    }
}

impl Connection {
    fn open(path: &CStr) -> Result<Connection> {
        super::walbuf::register()
            .map_err(|rc| Error::Internal(format!("cannot register the WAL buffer VFS: code {rc}")))?;
        let mut db = std::ptr::null_mut();
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_NOMUTEX;
        let vfs = super::walbuf::NAME.as_ptr();
        // SAFETY: a NUL-terminated path; `db` receives a handle (even on failure, to be closed).
        let rc = unsafe { ffi::sqlite3_open_v2(path.as_ptr(), &mut db, flags, vfs) };
        let db = NonNull::new(db).ok_or_else(|| Error::Internal("sqlite3_open_v2 gave no handle".into()))?;
        // From here `conn` owns the handle: its Drop closes it.
        let mut conn = Connection {
            db,
            statements: Default::default(),
            wal_frames: Box::default(),
            checkpoint_at: CHECKPOINT_FRAMES,
        };
        check(db, rc)?;
        // SAFETY: a valid handle.
        unsafe {
            ffi::sqlite3_extended_result_codes(db.as_ptr(), 1);
            ffi::sqlite3_busy_timeout(db.as_ptr(), BUSY_TIMEOUT_MS);
        }
        // FULL with checkpoint_fullfsync: each commit's sync of the WAL (SQLITE_SYNC_NORMAL)
        // only writes out the frames `walbuf.rs` gathered, and returns before the disk has
        // them — `durable.rs` syncs and answers; a checkpoint's (SQLITE_SYNC_FULL) syncs. The
        // other settings are those of the pools (`connect.rs`).
        conn.exec(
            "PRAGMA synchronous = FULL; PRAGMA checkpoint_fullfsync = ON; \
             PRAGMA cache_size = -32768; PRAGMA temp_store = memory",
        )?;
        let mode = conn.query("PRAGMA journal_mode", &[])?;
        if mode != [vec![Value::Text("wal".into())]] {
            return Err(Error::Internal(format!("the database is not in WAL mode: {mode:?}")));
        }
        // Replaces the automatic checkpoint (itself a WAL hook) with a note of the WAL's size.
        let frames: *const AtomicI32 = &*conn.wal_frames;
        // SAFETY: a valid handle; the hook's argument outlives it (see `wal_frames`).
        unsafe { ffi::sqlite3_wal_hook(db.as_ptr(), Some(note_wal_size), frames as *mut std::ffi::c_void) };
        Ok(conn)
    }

    /// Runs SQL without parameters or results (BEGIN, SAVEPOINT, PRAGMA …).
    fn exec(&mut self, sql: &str) -> Result<()> {
        let sql = CString::new(sql).map_err(|e| Error::Internal(e.to_string()))?;
        // SAFETY: a valid handle and a NUL-terminated string.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.db.as_ptr(),
                sql.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        check(self.db, rc)
    }

    /// Runs a statement, handing each row to `on_row`.
    fn run(&mut self, sql: &str, binds: &[Param<'_>], mut on_row: impl FnMut(Vec<Value>)) -> Result<()> {
        let db = self.db;
        let s = self.prepared(sql)?;
        let raw = s.raw.as_ptr();
        // SAFETY: a prepared statement of this handle.
        let columns = unsafe { ffi::sqlite3_column_count(raw) };
        let result = bind(db, s, binds).and_then(|()| {
            loop {
                // SAFETY: bound values outlive the step (they are cleared below, before return).
                match unsafe { ffi::sqlite3_step(raw) } {
                    ffi::SQLITE_ROW => on_row((0..columns).map(|i| column(raw, i)).collect()),
                    ffi::SQLITE_DONE => return Ok(()),
                    rc => return check(db, rc),
                }
            }
        });
        // SAFETY: as above; clearing drops the pointers to the caller's values.
        unsafe {
            ffi::sqlite3_reset(raw);
            ffi::sqlite3_clear_bindings(raw);
        }
        result
    }

    fn query(&mut self, sql: &str, binds: &[Param<'_>]) -> Result<Vec<Vec<Value>>> {
        let mut rows = Vec::new();
        self.run(sql, binds, |row| rows.push(row))?;
        Ok(rows)
    }

    /// `sql`, prepared on its first use.
    fn prepared(&mut self, sql: &str) -> Result<&Statement> {
        if self.statements.contains_key(sql) {
            return self.statements.get(sql).ok_or_else(|| Error::Internal("statement not prepared".into()));
        }
        if self.statements.len() >= MAX_STATEMENTS {
            // Dropping a statement finalizes it; none is running between runs.
            self.statements.clear();
        }
        let statement = prepare(self.db, sql)?;
        Ok(self.statements.entry(sql.to_string()).or_insert(statement))
    }

    /// Copies what it can of the WAL into the database, as SQLite's automatic checkpoint does
    /// (PASSIVE: readers are not waited for).
    fn checkpoint(&mut self) -> Result<()> {
        // SAFETY: a valid handle; a null schema name means every attached database.
        let rc = unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                self.db.as_ptr(),
                std::ptr::null(),
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        check(self.db, rc)
    }

    /// True inside a transaction.
    fn in_transaction(&self) -> bool {
        // SAFETY: a valid handle.
        unsafe { ffi::sqlite3_get_autocommit(self.db.as_ptr()) == 0 }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.statements.clear();
        // SAFETY: the handle is closed once, after its last statement was finalized (dropped).
        unsafe { ffi::sqlite3_close(self.db.as_ptr()) };
    }
}

/// Prepares one statement and maps its parameters: our SQL numbers them `$N`, SQLite numbers
/// them by first appearance.
fn prepare(db: NonNull<ffi::sqlite3>, sql: &str) -> Result<Statement> {
    let mut raw = std::ptr::null_mut();
    let mut tail: *const c_char = std::ptr::null();
    // SAFETY: `sql` is valid for its length; `raw` receives the statement, `tail` where it
    // ended inside `sql`.
    let rc = unsafe {
        ffi::sqlite3_prepare_v3(
            db.as_ptr(),
            sql.as_ptr() as *const c_char,
            sql.len() as c_int,
            ffi::SQLITE_PREPARE_PERSISTENT,
            &mut raw,
            &mut tail,
        )
    };
    check(db, rc)?;
    let raw = NonNull::new(raw).ok_or_else(|| Error::Internal(format!("empty statement: {sql}")))?;
    // Finalized by its Drop unless it is returned.
    let mut statement = Statement { raw, params: Vec::new() };
    let used = if tail.is_null() { sql.len() } else { tail as usize - sql.as_ptr() as usize };
    if !sql.get(used..).is_some_and(|rest| rest.trim().is_empty()) {
        return Err(Error::Internal(format!("one statement expected: {sql}")));
    }
    // SAFETY: a prepared statement; names are NUL-terminated and live with it.
    let count = unsafe { ffi::sqlite3_bind_parameter_count(raw.as_ptr()) };
    let mut params = Vec::with_capacity(count as usize);
    for i in 1..=count {
        // SAFETY: as above, for a parameter index within the count.
        let name = unsafe { ffi::sqlite3_bind_parameter_name(raw.as_ptr(), i) };
        let n = (!name.is_null())
            .then(|| unsafe { CStr::from_ptr(name) }.to_str().ok())
            .flatten()
            .and_then(|n| n.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1);
        match n {
            Some(n) => params.push(n - 1),
            None => return Err(Error::Internal(format!("parameter {i} is not $N in: {sql}"))),
        }
    }
    statement.params = params;
    Ok(statement)
}

/// One write transaction on the write connection, holding it until the transaction ends.
pub struct Session {
    conn: OwnedMutexGuard<Connection>,
    sync: Arc<WalSync>,
    /// Between BEGIN and COMMIT/ROLLBACK.
    open: bool,
}

impl Session {
    /// Takes the write connection and begins an immediate (write-locked) transaction.
    pub async fn begin(writer: &Writer) -> Result<Session> {
        let conn = writer.conn.clone().lock_owned().await;
        let mut session = Session { conn, sync: writer.sync.clone(), open: false };
        if session.conn.in_transaction() {
            // Left open by a ROLLBACK that failed: whatever it holds is not ours to keep.
            session.conn.exec("ROLLBACK")?;
        }
        // Another process holding the write lock (a CLI command beside the server) makes
        // SQLite wait in its busy handler: not on the async runtime's thread.
        let db = session.conn.db.as_ptr();
        // Before the WAL's write lock is ours again: what an earlier transaction that did not
        // commit left gathered must never reach the file.
        super::walbuf::discard(db);
        // SAFETY: a valid handle, held.
        unsafe { ffi::sqlite3_busy_timeout(db, 0) };
        let first = session.conn.run(BEGIN, &[], |_| ());
        unsafe { ffi::sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS) };
        match first {
            Ok(()) => {
                session.open = true;
                Ok(session)
            }
            Err(e) if is_busy(&e) => tokio::task::spawn_blocking(move || {
                session.conn.run(BEGIN, &[], |_| ())?;
                session.open = true;
                Ok(session)
            })
            .await
            .map_err(|e| Error::Internal(format!("begin task: {e}")))?,
            Err(e) => Err(e),
        }
    }

    /// Commits, runs `then` once it has committed, and checkpoints the WAL when it has grown
    /// past [`CHECKPOINT_FRAMES`]. The connection is free for the next transaction when this
    /// returns; the commit is durable when the returned [`Durable`] resolves.
    ///
    /// The COMMIT runs here, on the caller's thread, like the statements before it: it only
    /// appends the pages to the WAL (`walbuf.rs`). A hand-off to a blocking thread and back
    /// made the writer wait for a busy runtime thread to pick it up again, about a fifth of
    /// its time per HL7 group. The checkpoint, which copies the WAL into the database and
    /// syncs it (milliseconds), runs on a blocking thread; the next transaction waits for it.
    pub async fn commit(mut self, then: impl FnOnce() + Send + 'static) -> Result<Durable> {
        // Nothing awaits between COMMIT and `then`: a caller that stops waiting cannot leave
        // `then` undone.
        self.conn.run("COMMIT", &[], |_| ())?;
        self.open = false;
        then();
        // Numbered before the connection is released: in the WAL's order.
        let durable = Durable::after(self.sync.clone(), self.sync.committed());
        if self.conn.wal_frames.load(Ordering::Relaxed) >= self.conn.checkpoint_at {
            let done = tokio::task::spawn_blocking(move || self.conn.checkpoint()).await;
            match done {
                Ok(Ok(())) => {}
                // Committed all the same: the next commit's checkpoint tries again.
                Ok(Err(e)) => tracing::warn!("WAL checkpoint: {e}"),
                Err(e) => tracing::warn!("WAL checkpoint task: {e}"),
            }
        }
        Ok(durable)
    }

    /// Runs SQL without parameters or results (SAVEPOINT, …).
    pub fn exec(&mut self, sql: &str) -> Result<()> {
        self.conn.exec(sql)
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute(&mut self, sql: &str, binds: &[Param<'_>]) -> Result<u64> {
        self.conn.run(sql, binds, |_| ())?;
        // SAFETY: a valid handle.
        Ok(unsafe { ffi::sqlite3_changes64(self.conn.db.as_ptr()) } as u64)
    }

    /// Runs an INSERT into a rowid table; the new row's rowid.
    pub fn insert(&mut self, sql: &str, binds: &[Param<'_>]) -> Result<i64> {
        self.conn.run(sql, binds, |_| ())?;
        // SAFETY: a valid handle, used by this thread alone (see `Connection`).
        Ok(unsafe { ffi::sqlite3_last_insert_rowid(self.conn.db.as_ptr()) })
    }

    /// Runs a statement and returns its rows.
    pub fn query(&mut self, sql: &str, binds: &[Param<'_>]) -> Result<Vec<Vec<Value>>> {
        self.conn.query(sql, binds)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.open {
            // A transaction that did not commit leaves nothing behind. Should the ROLLBACK
            // fail, the next `begin` tries again.
            let _ = self.conn.exec("ROLLBACK");
        }
    }
}

/// Column `i` of the current row.
fn column(stmt: *mut ffi::sqlite3_stmt, i: c_int) -> Value {
    // SAFETY: called on a statement positioned on a row, for a column it has; pointers are
    // copied before the next call on the statement.
    unsafe {
        match ffi::sqlite3_column_type(stmt, i) {
            ffi::SQLITE_INTEGER => Value::Int(ffi::sqlite3_column_int64(stmt, i)),
            ffi::SQLITE_FLOAT => Value::Real(ffi::sqlite3_column_double(stmt, i)),
            ffi::SQLITE_TEXT => {
                let p = ffi::sqlite3_column_text(stmt, i);
                let n = ffi::sqlite3_column_bytes(stmt, i) as usize;
                if p.is_null() {
                    Value::Text(String::new())
                } else {
                    Value::Text(String::from_utf8_lossy(std::slice::from_raw_parts(p, n)).into_owned())
                }
            }
            ffi::SQLITE_BLOB => {
                let p = ffi::sqlite3_column_blob(stmt, i) as *const u8;
                let n = ffi::sqlite3_column_bytes(stmt, i) as usize;
                if p.is_null() {
                    Value::Blob(Vec::new())
                } else {
                    Value::Blob(std::slice::from_raw_parts(p, n).to_vec())
                }
            }
            _ => Value::Null,
        }
    }
}

/// Binds each parameter of `s` to the value its `$N` names (missing values are NULL, as sqlx
/// does).
fn bind(db: NonNull<ffi::sqlite3>, s: &Statement, binds: &[Param<'_>]) -> Result<()> {
    let raw = s.raw.as_ptr();
    for (i, &at) in s.params.iter().enumerate() {
        let p = binds.get(at).copied().unwrap_or(Param::NullText);
        let i = i as c_int + 1;
        // SAFETY: SQLITE_STATIC: the values outlive the run (bindings are cleared after it).
        let rc = unsafe {
            match p {
                Param::NullText | Param::NullInt | Param::NullReal => ffi::sqlite3_bind_null(raw, i),
                Param::Bool(v) => ffi::sqlite3_bind_int64(raw, i, v.into()),
                Param::Int(v) => ffi::sqlite3_bind_int64(raw, i, v),
                Param::Real(v) => ffi::sqlite3_bind_double(raw, i, v),
                Param::Text(v) => ffi::sqlite3_bind_text64(
                    raw,
                    i,
                    v.as_ptr() as *const c_char,
                    v.len() as u64,
                    ffi::SQLITE_STATIC(),
                    ffi::SQLITE_UTF8 as u8,
                ),
                Param::Blob(v) => ffi::sqlite3_bind_blob64(
                    raw,
                    i,
                    v.as_ptr() as *const std::ffi::c_void,
                    v.len() as u64,
                    ffi::SQLITE_STATIC(),
                ),
            }
        };
        check(db, rc)?;
    }
    Ok(())
}

/// `Ok` for SQLITE_OK, else the connection's error.
fn check(db: NonNull<ffi::sqlite3>, rc: c_int) -> Result<()> {
    if rc == ffi::SQLITE_OK {
        return Ok(());
    }
    // SAFETY: a valid handle; the message is copied before any other call on it.
    let (code, message) = unsafe {
        let code = ffi::sqlite3_extended_errcode(db.as_ptr());
        let msg = ffi::sqlite3_errmsg(db.as_ptr());
        let message =
            if msg.is_null() { String::new() } else { CStr::from_ptr(msg).to_string_lossy().into_owned() };
        (if code == ffi::SQLITE_OK { rc } else { code }, message)
    };
    Err(Error::Store(sqlx::Error::Database(Box::new(SqliteFailure { code, message }))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    /// A WAL database in a temporary folder with the table `t` (`columns`), a pool on it and
    /// the write connection.
    async fn database(columns: &str) -> (tempfile::TempDir, sqlx::SqlitePool, Writer) {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", tmp.path().display());
        let pool = SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE TABLE t ({columns})"))).execute(&pool).await.unwrap();
        let writer = Writer::open(&tmp.path().join("t.db")).await.unwrap();
        (tmp, pool, writer)
    }

    #[tokio::test]
    async fn binds_by_number_commits_and_rolls_back() {
        let (_tmp, pool, writer) = database("a TEXT PRIMARY KEY, b INTEGER, c BLOB").await;

        let mut s = Session::begin(&writer).await.unwrap();
        // Parameters named out of order bind by their number, not their position.
        let n = s
            .execute(
                "INSERT INTO t (b, a, c) VALUES ($2, $1, $3)",
                &[Param::Text("x"), Param::Int(7), Param::Blob(b"{}")],
            )
            .unwrap();
        assert_eq!(n, 1);
        let rows = s.query("SELECT a, b, c FROM t WHERE a = $1", &[Param::Text("x")]).unwrap();
        assert_eq!(rows, vec![vec![Value::Text("x".into()), Value::Int(7), Value::Blob(b"{}".to_vec())]]);
        // A unique violation is the same kind of error sqlx reports, so writers retry it.
        let dup = s.execute("INSERT INTO t (a) VALUES ($1)", &[Param::Text("x")]).unwrap_err();
        assert!(crate::store::is_write_conflict(&dup), "{dup}");
        s.commit(|| {}).await.unwrap().wait().await.unwrap();

        // Dropped without commit: nothing stays, and the connection is usable again, with the
        // statements it prepared before.
        let mut s = Session::begin(&writer).await.unwrap();
        s.execute("INSERT INTO t (a) VALUES ($1)", &[Param::Text("y")]).unwrap();
        drop(s);
        let mut s = Session::begin(&writer).await.unwrap();
        let rows = s.query("SELECT a, b, c FROM t WHERE a = $1", &[Param::Text("x")]).unwrap();
        assert_eq!(rows.len(), 1);
        drop(s);
        let count: (i64,) = sqlx::query_as("SELECT count(*) FROM t").fetch_one(&pool).await.unwrap();
        assert_eq!(count.0, 1);
        drop(writer);
        pool.close().await;
    }

    #[tokio::test]
    async fn checkpoints_once_the_wal_has_grown() {
        let (tmp, pool, writer) = database("a INTEGER PRIMARY KEY, c BLOB").await;
        let dir = tmp.path();
        writer.conn.lock().await.checkpoint_at = 10;
        let blob = vec![7u8; 3000];
        for i in 0..200 {
            let mut s = Session::begin(&writer).await.unwrap();
            s.execute("INSERT INTO t (a, c) VALUES ($1, $2)", &[Param::Int(i), Param::Blob(&blob)]).unwrap();
            s.commit(|| {}).await.unwrap().wait().await.unwrap();
        }
        // 200 commits of a page or two each: ~1.5 MB of WAL unless it starts over after each
        // checkpoint.
        let wal = std::fs::metadata(dir.join("t.db-wal")).unwrap().len();
        assert!(wal < 40 * 4120, "the WAL grew to {wal} bytes");
        let count: (i64,) = sqlx::query_as("SELECT count(*) FROM t").fetch_one(&pool).await.unwrap();
        assert_eq!(count.0, 200);
        drop(writer);
        pool.close().await;
    }
}
