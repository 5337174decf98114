//! A VFS shim for the SQLite write connection that coalesces the WAL writes of a commit.
//!
//! SQLite writes every WAL frame with two `pwrite`s (its 24-byte header, then the page), and a
//! group commit of a few HL7 messages writes about 130 frames: ~260 system calls, each paying
//! the kernel's per-call write path (page-cache lookup, ext4 write_begin/end), which measured
//! three quarters of the COMMIT's CPU. Here the WAL's contiguous writes are gathered in memory
//! and written with one `pwrite` when SQLite next needs them on the file.
//!
//! When the gathered bytes must be on the file:
//! - before anything reads, sizes, truncates or closes the WAL through this connection;
//! - before other connections can see the frames. A reader learns of new frames only from
//!   the WAL index header, which SQLite publishes after the commit's `xSync` of the WAL. The
//!   writer therefore runs with `synchronous = FULL`, which calls `xSync` at every commit: the
//!   shim writes the buffer out there, where a failure is still the COMMIT's error, and the
//!   header is published only after that.
//!
//! A commit's `xSync` does not wait for the disk: `durable.rs` syncs the WAL for many commits
//! at once. Checkpoints must sync for real — the WAL has to be on disk before any of its pages
//! overwrite the database file — and the writer sets `checkpoint_fullfsync`, which makes
//! SQLite sync the WAL with `SQLITE_SYNC_FULL` for checkpoints (and for a restarted WAL's
//! header) while commits pass `SQLITE_SYNC_NORMAL`. So the shim syncs for `FULL` and only
//! writes out for `NORMAL`.
//!
//! Bytes still gathered when a write transaction ends without a commit are frames SQLite
//! spilled for that transaction: garbage once it is rolled back, and not the writer's to write
//! any more — another connection may append its own frames at those offsets as soon as the
//! WAL's write lock is free. So they are dropped, never written: when the writer begins its
//! next transaction ([`discard`]) and when the file closes. (A commit leaves nothing gathered.)
//!
//! Only WAL files are wrapped; the database file and its shared memory are the default VFS's
//! own, so locking and the WAL index are shared with the sqlx pools as before.

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use libsqlite3_sys as ffi;

/// The name the write connection opens its database with.
pub const NAME: &CStr = c"hearth-walbuf";

/// Most bytes gathered before they are written out anyway (a bulk transaction spills more).
const CAP: usize = 4 << 20;
/// Most bytes per write: the default VFS's `seekAndWriteFd` masks a write's length with
/// `0x1ffff`, so a longer one loses its high bits (and a multiple of 128 KiB writes nothing).
const WRITE_MAX: usize = 31 * 4096;

/// The default VFS and ours, registered once per process.
struct Registered {
    base: *mut ffi::sqlite3_vfs,
    /// Where our state starts inside a file object: after the default VFS's own.
    offset: usize,
}

// SAFETY: both pointers are to VFS objects SQLite keeps for the life of the process and
// never changes after registration.
unsafe impl Send for Registered {}
unsafe impl Sync for Registered {}

static REGISTERED: OnceLock<Result<Registered, c_int>> = OnceLock::new();

/// Registers the shim (once); the SQLite result code if that failed.
pub fn register() -> Result<(), c_int> {
    REGISTERED.get_or_init(|| unsafe { register_now() }).as_ref().map(|_| ()).map_err(|rc| *rc)
}

/// SAFETY: called once, through `REGISTERED`.
unsafe fn register_now() -> Result<Registered, c_int> {
    // SAFETY: initializing SQLite is allowed at any time; the default VFS lives for ever.
    let rc = unsafe { ffi::sqlite3_initialize() };
    if rc != ffi::SQLITE_OK {
        return Err(rc);
    }
    let base = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    if base.is_null() {
        return Err(ffi::SQLITE_ERROR);
    }
    // SAFETY: a valid VFS; copied, not changed.
    let mut vfs = unsafe { *base };
    let offset = (vfs.szOsFile as usize).next_multiple_of(std::mem::align_of::<Shim>());
    vfs.szOsFile = (offset + std::mem::size_of::<Shim>()) as c_int;
    vfs.zName = NAME.as_ptr();
    vfs.pNext = std::ptr::null_mut();
    vfs.xOpen = Some(open);
    // The other methods stay the default VFS's: they do not depend on which VFS object
    // they are called with (its `pAppData`, which they read, is copied too).
    let ours = Box::into_raw(Box::new(vfs));
    // SAFETY: a VFS object that lives for ever (leaked on purpose), not made the default.
    let rc = unsafe { ffi::sqlite3_vfs_register(ours, 0) };
    if rc != ffi::SQLITE_OK {
        return Err(rc);
    }
    Ok(Registered { base, offset })
}

fn registered() -> &'static Registered {
    match REGISTERED.get() {
        Some(Ok(r)) => r,
        // `open` is only reached through a registered VFS.
        _ => unreachable!("the WAL buffer VFS is used before it is registered"),
    }
}

/// Our part of a WAL file object, after the default VFS's part.
struct Shim {
    /// The default VFS's methods for this file.
    real: *const ffi::sqlite3_io_methods,
    /// Bytes gathered for the file from `start` on.
    buf: Vec<u8>,
    start: i64,
}

/// SAFETY (for every method below): SQLite calls them with a file object it opened through
/// `open`, whose `Shim` was written there, one call at a time per file.
unsafe fn shim<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Shim {
    unsafe { &mut *((file as *mut u8).add(registered().offset) as *mut Shim) }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let r = registered();
    // SAFETY: the default VFS opens into the front of the object, which is its size.
    let rc = match unsafe { (*r.base).xOpen } {
        Some(f) => unsafe { f(r.base, name, file, flags, out_flags) },
        None => ffi::SQLITE_CANTOPEN,
    };
    if rc != ffi::SQLITE_OK || flags & ffi::SQLITE_OPEN_WAL == 0 {
        return rc;
    }
    // SAFETY: `file` is open, its methods set by the default VFS; the space after its part is
    // ours and uninitialized.
    unsafe {
        let real = (*file).pMethods;
        std::ptr::write(
            (file as *mut u8).add(r.offset) as *mut Shim,
            Shim { real, buf: Vec::new(), start: 0 },
        );
        (*file).pMethods = &WAL_METHODS;
    }
    rc
}

impl Shim {
    /// Writes out what is gathered.
    unsafe fn flush(&mut self, file: *mut ffi::sqlite3_file) -> c_int {
        if self.buf.is_empty() {
            return ffi::SQLITE_OK;
        }
        let Some(write) = (unsafe { (*self.real).xWrite }) else { return ffi::SQLITE_IOERR_WRITE };
        let mut rc = ffi::SQLITE_OK;
        let mut at = self.start;
        for chunk in self.buf.chunks(WRITE_MAX) {
            // SAFETY: the real method on the real file (see `shim`).
            rc = unsafe { write(file, chunk.as_ptr() as *const c_void, chunk.len() as c_int, at) };
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += chunk.len() as i64;
        }
        self.buf.clear();
        rc
    }
}

/// The real method `$m` of the file, called after the gathered bytes are written out.
macro_rules! after_flush {
    ($file:expr, $m:ident, $($arg:expr),*) => {{
        // SAFETY: see `shim`.
        let s = unsafe { shim($file) };
        let rc = unsafe { s.flush($file) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match unsafe { (*s.real).$m } {
            // SAFETY: the default VFS's own method, with its own arguments.
            Some(f) => unsafe { f($file, $($arg),*) },
            None => ffi::SQLITE_OK,
        }
    }};
}

/// The real method `$m` of the file, as it is.
macro_rules! forward {
    ($file:expr, $m:ident, $default:expr, $($arg:expr),*) => {{
        // SAFETY: see `shim`.
        let s = unsafe { shim($file) };
        match unsafe { (*s.real).$m } {
            // SAFETY: the default VFS's own method, with its own arguments.
            Some(f) => unsafe { f($file, $($arg),*) },
            None => $default,
        }
    }};
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: see `shim`; the Shim (with whatever a rolled-back transaction left gathered: see
    // the module's comment) is dropped once, here, and the file closed after.
    unsafe {
        let s = shim(file);
        let real = s.real;
        std::ptr::drop_in_place(s as *mut Shim);
        match (*real).xClose {
            Some(f) => f(file),
            None => ffi::SQLITE_OK,
        }
    }
}

/// Drops what a transaction of `db` that did not commit left gathered for its WAL. Called
/// before the connection's next transaction begins, by the one thread using it.
pub fn discard(db: *mut ffi::sqlite3) {
    let mut wal: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: a valid handle; the file control writes the WAL's file object (or leaves null).
    let rc = unsafe {
        ffi::sqlite3_file_control(
            db,
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_JOURNAL_POINTER,
            &mut wal as *mut *mut ffi::sqlite3_file as *mut c_void,
        )
    };
    if rc != ffi::SQLITE_OK || wal.is_null() {
        return;
    }
    // SAFETY: an open file object of this connection; ours only if it carries our methods.
    unsafe {
        if std::ptr::eq((*wal).pMethods, &WAL_METHODS) {
            shim(wal).buf.clear();
        }
    }
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, out: *mut c_void, n: c_int, at: i64) -> c_int {
    after_flush!(file, xRead, out, n, at)
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, data: *const c_void, n: c_int, at: i64) -> c_int {
    // SAFETY: see `shim`; `data` holds `n` bytes for the duration of the call.
    let s = unsafe { shim(file) };
    let bytes = unsafe { std::slice::from_raw_parts(data as *const u8, n.max(0) as usize) };
    let contiguous = !s.buf.is_empty() && at == s.start + s.buf.len() as i64;
    if !contiguous || s.buf.len() + bytes.len() > CAP {
        let rc = unsafe { s.flush(file) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        s.start = at;
    }
    s.buf.extend_from_slice(bytes);
    ffi::SQLITE_OK
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    after_flush!(file, xTruncate, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    if flags & 0x0f != ffi::SQLITE_SYNC_FULL {
        // A commit: on the file now, on disk by `durable.rs`.
        // SAFETY: see `shim`.
        return unsafe { shim(file).flush(file) };
    }
    after_flush!(file, xSync, flags)
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    after_flush!(file, xFileSize, size)
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xLock, ffi::SQLITE_OK, level)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xUnlock, ffi::SQLITE_OK, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    forward!(file, xCheckReservedLock, ffi::SQLITE_OK, out)
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // Whatever a file control does to the file, it sees every write made before it.
    after_flush!(file, xFileControl, op, arg)
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xSectorSize, 4096,)
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xDeviceCharacteristics, 0,)
}

/// Version 1: SQLite asks the WAL file for nothing else (shared memory and memory mapping are
/// the database file's).
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use super::super::direct::{Param, Session, Value, Writer};
    use sqlx::SqlitePool;
    use sqlx::sqlite::SqlitePoolOptions;

    /// A WAL database in `tmp` with a table `t (k, v)`, and a pool of `n` connections on it.
    async fn table(tmp: &tempfile::TempDir, n: u32) -> SqlitePool {
        let url = format!("sqlite://{}/t.db?mode=rwc", tmp.path().display());
        let pool = SqlitePoolOptions::new().max_connections(n).connect(&url).await.unwrap();
        sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await.unwrap();
        sqlx::query("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)").execute(&pool).await.unwrap();
        pool
    }

    /// Commits through the shim are seen at once by another connection (the default VFS),
    /// survive a checkpoint, and a transaction larger than the buffer is whole.
    #[tokio::test]
    async fn gathered_writes_are_seen_and_checkpointed() {
        let tmp = tempfile::tempdir().unwrap();
        let pool = table(&tmp, 2).await;
        let writer = Writer::open(&tmp.path().join("t.db")).await.unwrap();
        let blob = vec![7u8; 3000];
        for round in 0..3i64 {
            let mut s = Session::begin(&writer).await.unwrap();
            // ~6 MB in the last round: more than the buffer holds.
            let rows = if round == 2 { 2000 } else { 10 };
            for i in 0..rows {
                s.execute(
                    "INSERT INTO t (k, v) VALUES ($1, $2)",
                    &[Param::Int(round * 10_000 + i), Param::Blob(&blob)],
                )
                .unwrap();
            }
            s.commit(|| {}).await.unwrap().wait().await.unwrap();
            let n: (i64,) = sqlx::query_as("SELECT count(*) FROM t").fetch_one(&pool).await.unwrap();
            assert_eq!(n.0, [10, 20, 2020][round as usize]);
        }
        let mut s = Session::begin(&writer).await.unwrap();
        let rows = s.query("SELECT sum(length(v)) FROM t", &[]).unwrap();
        assert_eq!(rows, vec![vec![Value::Int(2020 * 3000)]]);
        drop(s);
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
        let ok: (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&pool).await.unwrap();
        assert_eq!(ok.0, "ok");
        drop(writer);
        pool.close().await;
    }

    /// Frames a rolled-back transaction spilled are never written over what another connection
    /// committed after it.
    #[tokio::test]
    async fn a_rolled_back_spill_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let pool = table(&tmp, 1).await;
        let blob = vec![7u8; 3000];
        // An empty WAL: undoing the transaction below reads only the database file.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
        let writer = Writer::open(&tmp.path().join("t.db")).await.unwrap();
        let mut s = Session::begin(&writer).await.unwrap();
        // A small page cache: the pages of this transaction spill into the WAL before it ends.
        s.exec("PRAGMA cache_size = 20").unwrap();
        for i in 0..500 {
            s.execute("INSERT INTO t (k, v) VALUES ($1, $2)", &[Param::Int(i), Param::Blob(&blob)]).unwrap();
        }
        drop(s);
        // Another connection commits where the spilled frames would have gone.
        let other = vec![9u8; 3000];
        for k in 0..50i64 {
            sqlx::query("INSERT INTO t (k, v) VALUES (?, ?)")
                .bind(10_000 + k)
                .bind(&other)
                .execute(&pool)
                .await
                .unwrap();
        }
        let mut s = Session::begin(&writer).await.unwrap();
        s.exec("PRAGMA cache_size = -32768").unwrap();
        s.execute("INSERT INTO t (k, v) VALUES ($1, $2)", &[Param::Int(1), Param::Blob(&blob)]).unwrap();
        s.commit(|| {}).await.unwrap().wait().await.unwrap();
        let ok: (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&pool).await.unwrap();
        assert_eq!(ok.0, "ok");
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT k, v FROM t ORDER BY k").fetch_all(&pool).await.unwrap();
        assert_eq!(rows.len(), 51);
        assert!(rows[1..].iter().all(|(k, v)| *k >= 10_000 && *v == other));
        drop(writer);
        pool.close().await;
    }
}
