//! Schema migrations applied to a database written by an older Hearth: what was stored stays
//! readable.

use std::borrow::Cow;

use hearth::store::Store;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::support::{Backend, Db};

/// The migrations of `folder` up to and including `last`, as the server compiles them in (its
/// record of applied migrations is checked by their SQL text).
fn migrator(folder: &str, last: i64) -> Migrator {
    let dir = format!("{}/migrations/{folder}", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("migrations folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    files.sort();
    let migrations = files
        .iter()
        .map(|f| {
            let version: i64 = f[..4].parse().expect("numbered migration");
            let sql = std::fs::read_to_string(format!("{dir}/{f}")).expect("migration file");
            Migration::new(
                version,
                Cow::Owned(f.clone()),
                MigrationType::Simple,
                AssertSqlSafe(sql).into_sql_str(),
                false,
            )
        })
        .filter(|m| m.version <= last)
        .collect();
    Migrator::with_migrations(migrations)
}

/// Runs `sql` (several statements) on the database, or returns `(method, body IS NULL)` of each
/// history row in write order.
async fn on_db(backend: Backend, url: &str, migrate_to: Option<i64>, sql: &str) -> Vec<(String, bool)> {
    let history = "SELECT method, body IS NULL FROM resource_history ORDER BY hkey";
    match backend {
        Backend::Sqlite => {
            let options = url.parse::<sqlx::sqlite::SqliteConnectOptions>().unwrap().create_if_missing(true);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            if let Some(last) = migrate_to {
                migrator("sqlite", last).run(&pool).await.unwrap();
            }
            sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&pool).await.unwrap();
            let rows = sqlx::query_as(history).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
        Backend::Postgres => {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
            if let Some(last) = migrate_to {
                migrator("postgres", last).run(&pool).await.unwrap();
            }
            sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&pool).await.unwrap();
            let rows = sqlx::query_as(history).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    }
}

/// Migration 12: a database written before it keeps every version readable, and its current
/// versions' history rows give up their copy of the body (a deleted resource's last version
/// keeps its own).
async fn history_body_once(backend: Backend) {
    let db = Db::new(backend).await;
    // Patient/a at version 2 (updated), Patient/b deleted at version 2, as Hearth wrote them
    // before: every history row with its body.
    let blob = |s: &str| match backend {
        Backend::Sqlite => format!("CAST('{s}' AS BLOB)"),
        Backend::Postgres => format!("'{s}'::bytea"),
    };
    let key = |id: &str| format!("(SELECT rkey FROM resource WHERE id = '{id}')");
    let old = format!(
        "INSERT INTO resource (rtype, id, version, last_updated, deleted, body) VALUES \
         ('Patient', 'a', 2, 20, FALSE, {}), ('Patient', 'b', 2, 20, TRUE, {});
         INSERT INTO resource_history (rkey, rtype, id, version, last_updated, method, body) VALUES \
         ({a}, 'Patient', 'a', 1, 10, 'POST', {}), ({b}, 'Patient', 'b', 1, 10, 'POST', {}), \
         ({a}, 'Patient', 'a', 2, 20, 'PUT', {}), ({b}, 'Patient', 'b', 2, 20, 'DELETE', {});",
        blob(r#"{"v":2}"#),
        blob(""),
        blob(r#"{"v":1}"#),
        blob(r#"{"b":1}"#),
        blob(r#"{"v":2}"#),
        blob(""),
        a = key("a"),
        b = key("b"),
    );
    on_db(backend, &db.url, Some(11), &old).await;

    let store = Store::open(&db.url).await.unwrap();
    let body = |v: Option<hearth::store::Version>| String::from_utf8(v.unwrap().body).unwrap();
    assert_eq!(body(store.vread("Patient", "a", 1).await.unwrap()), r#"{"v":1}"#);
    assert_eq!(body(store.vread("Patient", "a", 2).await.unwrap()), r#"{"v":2}"#);
    assert_eq!(body(store.vread("Patient", "b", 1).await.unwrap()), r#"{"b":1}"#);
    assert_eq!(body(store.vread("Patient", "b", 2).await.unwrap()), "");
    drop(store);
    let nulls = on_db(backend, &db.url, None, "SELECT 1").await;
    let expected =
        [("POST", false), ("POST", false), ("PUT", true), ("DELETE", false)].map(|(m, n)| (m.to_string(), n));
    assert_eq!(nulls, expected);
}

crate::on_backends!(history_body_once);
