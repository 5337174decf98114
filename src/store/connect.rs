//! Opening a database and bringing its schema up to date.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::Backend;
use crate::error::{Error, Result};

/// Migrations are compiled in so the binary is self-contained; each list mirrors its folder.
fn migrator(files: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(*version, (*name).into(), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, "search index", include_str!("../../migrations/sqlite/0002_search_index.sql")),
    (3, "composite index", include_str!("../../migrations/sqlite/0003_composite.sql")),
    (4, "rkey and pid", include_str!("../../migrations/sqlite/0004_rkey_pid.sql")),
    (5, "bulk jobs", include_str!("../../migrations/sqlite/0005_bulk.sql")),
    (6, "auth keys", include_str!("../../migrations/sqlite/0006_auth.sql")),
    (7, "oauth flows", include_str!("../../migrations/sqlite/0007_oauth.sql")),
    (8, "bulk job client", include_str!("../../migrations/sqlite/0008_bulk_client.sql")),
    (9, "hl7 messages", include_str!("../../migrations/sqlite/0009_hl7.sql")),
    (10, "reference url index", include_str!("../../migrations/sqlite/0010_reference_url.sql")),
    (11, "history by rkey", include_str!("../../migrations/sqlite/0011_history_by_rkey.sql")),
    (12, "history body once", include_str!("../../migrations/sqlite/0012_history_body_once.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/postgres/0001_init.sql")),
    (2, "search index", include_str!("../../migrations/postgres/0002_search_index.sql")),
    (3, "composite index", include_str!("../../migrations/postgres/0003_composite.sql")),
    (4, "rkey and pid", include_str!("../../migrations/postgres/0004_rkey_pid.sql")),
    (5, "bulk jobs", include_str!("../../migrations/postgres/0005_bulk.sql")),
    (6, "auth keys", include_str!("../../migrations/postgres/0006_auth.sql")),
    (7, "oauth flows", include_str!("../../migrations/postgres/0007_oauth.sql")),
    (8, "bulk job client", include_str!("../../migrations/postgres/0008_bulk_client.sql")),
    (9, "hl7 messages", include_str!("../../migrations/postgres/0009_hl7.sql")),
    (10, "reference url index", include_str!("../../migrations/postgres/0010_reference_url.sql")),
    (11, "history by rkey", include_str!("../../migrations/postgres/0011_history_by_rkey.sql")),
    (12, "history body once", include_str!("../../migrations/postgres/0012_history_body_once.sql")),
];

pub(super) async fn open(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        open_sqlite(url).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        open_postgres(url).await
    } else {
        Err(Error::Internal(format!("unsupported database URL '{url}': use sqlite://PATH or postgres://…")))
    }
}

async fn open_sqlite(url: &str) -> Result<Backend> {
    // FULL keeps every acknowledged write across a power loss; WAL keeps readers off the writer.
    // (Resource transactions run on a connection of their own, made durable another way:
    // `durable.rs`.)
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_millis(super::direct::BUSY_TIMEOUT_MS as u64))
        .pragma("cache_size", "-32768")
        // Savepoints (group commits) journal every page they touch; in memory, not a file.
        .pragma("temp_store", "memory")
        // Hot index pages are rewritten by every commit; checkpointing less often copies each
        // of them to the database file once per 10k WAL pages instead of once per 1k
        // (measured: 2.4 → 1.9 ms per sequential create).
        .pragma("wal_autocheckpoint", "10000");
    let lock = lock_database(options.get_filename())?;
    let writer = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
    migrator(SQLITE_MIGRATIONS).run(&writer).await?;
    let direct = super::direct::Writer::open(options.get_filename()).await?;
    let readers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) as u32 * 2;
    let reader = SqlitePoolOptions::new()
        .max_connections(readers.max(2))
        .connect_with(options.read_only(true))
        .await?;
    Ok(Backend::Sqlite { writer, direct, reader, _lock: lock })
}

async fn open_postgres(url: &str) -> Result<Backend> {
    let pool = PgPoolOptions::new()
        .max_connections(32)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?;
    // The migrator takes an advisory lock, so several nodes may start at once.
    migrator(POSTGRES_MIGRATIONS).run(&pool).await?;
    Ok(Backend::Postgres(pool))
}

/// One Hearth process owns a SQLite database: its single writer and its read cache rely on
/// seeing every write. A second process is refused instead of silently serving stale reads.
fn lock_database(db: &std::path::Path) -> Result<std::fs::File> {
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", path.display())))?;
    file.try_lock().map_err(|_| {
        Error::Internal(format!(
            "{} is in use by another Hearth process (lock file {})",
            db.display(),
            path.display()
        ))
    })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each list names every file of its folder, in order: a migration file that is not listed
    /// is never applied, and nothing else would notice.
    #[test]
    fn every_migration_file_is_compiled_in() {
        for (folder, list) in [("sqlite", SQLITE_MIGRATIONS), ("postgres", POSTGRES_MIGRATIONS)] {
            let dir = format!("{}/migrations/{folder}", env!("CARGO_MANIFEST_DIR"));
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
            files.sort();
            assert_eq!(files.len(), list.len(), "{dir}: {files:?}");
            for (file, (version, _, sql)) in files.iter().zip(list) {
                assert!(
                    file.starts_with(&format!("{version:04}_")),
                    "{folder}: {file} is not migration {version}"
                );
                let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
                assert_eq!(&text, sql, "{folder}: {file} is not the text compiled in as {version}");
            }
        }
    }
}
