//! Storage: the current/history/index tables on SQLite or PostgreSQL.
//!
//! Both backends run the same SQL text (SQLite accepts `$N` placeholders), so each statement is
//! written once and the [`on_backend!`] macro instantiates it for the backend's concrete sqlx
//! types. Only the DDL in `migrations/` differs. The store knows nothing of HTTP or FHIR rules:
//! the engine decides what to write, the store writes it atomically.

mod auth;
mod bulk;
mod cache;
mod connect;
mod direct;
mod durable;
pub mod hl7;
mod many;
mod oauth;
mod page;
mod query;
mod tx;
mod walbuf;

use std::sync::RwLock;

use sqlx::{PgPool, SqlitePool};

pub use auth::{Client, StoredKey, User};
pub use bulk::{BulkFile, Job};
use direct::Param;
pub use durable::Durable;
pub use many::NewVersion;
pub use oauth::{AuthCode, RefreshGrant, Used};
pub use page::{Page, Position, SortKey, SortKind, SortValue};
pub use query::{HistoryQuery, HistoryScope};
use tx::Conn;
pub use tx::{Tx, renumber};

use crate::error::{Error, Result};

/// A bound value for a dynamically built statement (search).
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    /// Text or SQL NULL.
    OptText(Option<String>),
    Int(i64),
    Real(f64),
    /// Integer or SQL NULL.
    OptInt(Option<i64>),
    /// Real or SQL NULL.
    OptReal(Option<f64>),
    /// A BLOB (stored JSON).
    Bytes(Vec<u8>),
}

/// A WHERE fragment over `resource r` produced by the search planner, with `$N` placeholders
/// numbered from 1 in the order of `binds`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub sql: String,
    pub binds: Vec<Bind>,
}

/// Index rows before their parameter is mapped to a small id, one type per table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenRow {
    pub param: String,
    pub system: Option<String>,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StringRow {
    pub param: String,
    pub norm: String,
    pub exact: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReferenceRow {
    pub param: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateRow {
    pub param: String,
    pub lo: i64,
    pub hi: i64,
}

#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub struct NumberRow {
    pub param: String,
    pub value: f64,
    pub system: Option<String>,
    pub code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UriRow {
    pub param: String,
    pub uri: String,
}

/// One value combination of a composite parameter: the token first component, and the second
/// component in the columns of its own type (the others stay empty).
#[derive(Debug, Clone, Default, PartialEq, PartialOrd)]
pub struct CompositeRow {
    pub param: String,
    pub c_system: Option<String>,
    pub c_code: String,
    pub system: Option<String>,
    pub code: Option<String>,
    pub value: Option<f64>,
    pub lo: Option<i64>,
    pub hi: Option<i64>,
    pub norm: Option<String>,
}

/// Everything one resource version contributes to the search index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexRows {
    pub tokens: Vec<TokenRow>,
    pub strings: Vec<StringRow>,
    pub references: Vec<ReferenceRow>,
    pub dates: Vec<DateRow>,
    pub numbers: Vec<NumberRow>,
    pub uris: Vec<UriRow>,
    pub composites: Vec<CompositeRow>,
}

impl IndexRows {
    /// Sorts each table's rows and drops duplicates (a value reached by two paths).
    pub fn dedup(&mut self) {
        fn sort_dedup<T: Ord>(v: &mut Vec<T>) {
            v.sort();
            v.dedup();
        }
        sort_dedup(&mut self.tokens);
        sort_dedup(&mut self.strings);
        sort_dedup(&mut self.references);
        sort_dedup(&mut self.dates);
        sort_dedup(&mut self.uris);
        self.numbers.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        self.numbers.dedup();
        self.composites.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        self.composites.dedup();
    }

    /// Adds `other`'s rows, sorted and without duplicates.
    pub fn extend(&mut self, other: IndexRows) {
        self.tokens.extend(other.tokens);
        self.strings.extend(other.strings);
        self.references.extend(other.references);
        self.dates.extend(other.dates);
        self.numbers.extend(other.numbers);
        self.uris.extend(other.uris);
        self.composites.extend(other.composites);
        self.dedup();
    }

    /// Every row, borrowed: its table's place in [`INDEX_TABLES`], its parameter, and its
    /// values in the order of the table's columns.
    pub(super) fn each<'r>(
        &'r self,
        mut f: impl FnMut(usize, &'r str, &[Param<'r>]) -> Result<()>,
    ) -> Result<()> {
        let t = |s: &'r Option<String>| s.as_deref().map_or(Param::NullText, Param::Text);
        for r in &self.tokens {
            f(0, &r.param, &[t(&r.system), Param::Text(&r.code)])?;
        }
        for r in &self.strings {
            f(1, &r.param, &[Param::Text(&r.norm), Param::Text(&r.exact)])?;
        }
        for r in &self.references {
            f(2, &r.param, &[t(&r.target_type), t(&r.target_id), Param::Text(&r.url)])?;
        }
        for r in &self.dates {
            f(3, &r.param, &[Param::Int(r.lo), Param::Int(r.hi)])?;
        }
        for r in &self.numbers {
            f(4, &r.param, &[Param::Real(r.value), t(&r.system), t(&r.code)])?;
        }
        for r in &self.uris {
            f(5, &r.param, &[Param::Text(&r.uri)])?;
        }
        for r in &self.composites {
            let values = [
                t(&r.c_system),
                Param::Text(&r.c_code),
                t(&r.system),
                t(&r.code),
                r.value.map_or(Param::NullReal, Param::Real),
                r.lo.map_or(Param::NullInt, Param::Int),
                r.hi.map_or(Param::NullInt, Param::Int),
                t(&r.norm),
            ];
            f(6, &r.param, &values)?;
        }
        Ok(())
    }

    /// Every row as the values of an INSERT into its table (`rkey, pid`, then the table's
    /// columns), by table in the order of [`INDEX_TABLES`]; `pid` gives a parameter's id.
    pub(super) fn inserts(
        &self,
        rkey: i64,
        pid: impl Fn(&str) -> Result<i64>,
    ) -> Result<[Vec<Vec<Bind>>; 7]> {
        let mut out: [Vec<Vec<Bind>>; 7] = Default::default();
        self.each(|table, param, values| {
            let mut row = Vec::with_capacity(values.len() + 2);
            row.extend([Bind::Int(rkey), Bind::Int(pid(param)?)]);
            row.extend(values.iter().map(|v| Bind::from(*v)));
            out[table].push(row);
            Ok(())
        })?;
        Ok(out)
    }
}

/// The index tables and their value columns (after `rkey, pid`), in the order of
/// [`IndexRows::each`].
pub(super) const INDEX_TABLES: [(&str, &str); 7] = [
    ("idx_token", "system, code"),
    ("idx_string", "norm, exact"),
    ("idx_reference", "target_type, target_id, url"),
    ("idx_date", "lo, hi"),
    ("idx_number", "value, system, code"),
    ("idx_uri", "uri"),
    ("idx_composite", "c_system, c_code, system, code, value, lo, hi, norm"),
];

/// The state of a resource's current row, as the write path needs it.
#[derive(Debug, Clone, Copy)]
pub struct Current {
    pub rkey: i64,
    pub version: i64,
    pub last_updated: i64,
    pub deleted: bool,
}

/// One stored version, with the exact bytes to serve.
#[derive(Debug, Clone)]
pub struct Version {
    pub rtype: String,
    pub id: String,
    pub version: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub method: String,
    pub body: Vec<u8>,
}

/// One search hit: the current version of a matching resource.
#[derive(Debug, Clone)]
pub struct Hit {
    pub rkey: i64,
    pub version: Version,
    /// The values of the page's sort keys, for the paging cursor.
    pub sort: Vec<SortValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

pub(crate) enum Backend {
    /// SQLite allows one writer at a time: resource transactions queue for the one `direct`
    /// connection, other writes for the single-connection `writer` pool, and SQLite's write
    /// lock orders the two; reads use their own pool (WAL).
    Sqlite {
        /// Writes outside resource transactions (auth, bulk jobs, parameters).
        writer: SqlitePool,
        /// Resource transactions (`direct.rs`).
        direct: direct::Writer,
        reader: SqlitePool,
        /// Held for the life of the store: see `connect::lock_database`.
        _lock: std::fs::File,
    },
    Postgres(PgPool),
}

pub struct Store {
    pub(crate) backend: Backend,
    /// Current versions, for SQLite only (see `cache.rs`).
    cache: Option<std::sync::Arc<cache::Cache>>,
    /// By type, then code: looked up for every index row written, without allocating.
    params: RwLock<Params>,
}

type Params = foldhash::HashMap<String, foldhash::HashMap<String, i32>>;

/// Runs the same statement-building expression against whichever backend is in use.
/// `$pool` is bound to the read pool (SQLite) or the pool (PostgreSQL).
macro_rules! on_backend {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite { reader: $pool, .. } => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_backend;

/// Like [`on_backend!`] for writes outside the resource transaction: `$pool` is SQLite's single
/// writer connection or the PostgreSQL pool.
macro_rules! on_writer {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite { writer: $pool, .. } => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_writer;

impl Store {
    /// Connects to `sqlite://PATH` or `postgres://…`, creating the SQLite file if needed, and
    /// applies the migrations.
    pub async fn open(url: &str) -> Result<Store> {
        let backend = connect::open(url).await?;
        let cache = matches!(backend, Backend::Sqlite { .. }).then(Default::default);
        let store = Store { backend, cache, params: RwLock::new(Params::default()) };
        store.load_params().await?;
        Ok(store)
    }

    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite { .. } => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { writer, reader, .. } => {
                writer.close().await;
                reader.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    pub async fn ping(&self) -> Result<()> {
        on_backend!(self, pool => { sqlx::query("SELECT 1").execute(pool).await?; });
        Ok(())
    }

    /// Begins the one write transaction of an interaction.
    pub async fn begin(&self) -> Result<Tx> {
        let conn = match &self.backend {
            Backend::Sqlite { direct, .. } => Conn::Sqlite(direct::Session::begin(direct).await?),
            Backend::Postgres(pool) => Conn::Postgres(pool.begin().await?),
        };
        Ok(Tx {
            conn,
            cache: self.cache.clone(),
            written: Vec::new(),
            inserted: Vec::new(),
            forget: Vec::new(),
        })
    }

    /// The small id of a search parameter, if it was registered.
    pub fn param_id(&self, rtype: &str, code: &str) -> Option<i32> {
        let params = self.params.read().unwrap_or_else(|e| e.into_inner());
        params.get(rtype).and_then(|by_code| by_code.get(code)).copied()
    }

    /// The id of an indexed parameter, which every parameter with index rows has.
    pub(super) fn index_pid(&self, rtype: &str, code: &str) -> Result<i64> {
        self.param_id(rtype, code)
            .map(i64::from)
            .ok_or_else(|| Error::Internal(format!("search parameter {rtype}.{code} is not registered")))
    }

    /// Makes sure every (type, code) has a parameter id. Safe to run on several nodes at once.
    pub async fn register_params(&self, params: &[(String, String)]) -> Result<()> {
        let missing: Vec<&(String, String)> =
            params.iter().filter(|(t, c)| self.param_id(t, c).is_none()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let sql = "INSERT INTO search_param (rtype, code) VALUES ($1, $2) ON CONFLICT DO NOTHING";
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                let mut tx = writer.begin().await?;
                for (t, c) in &missing {
                    sqlx::query(sql).bind(t).bind(c).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for (t, c) in &missing {
                    sqlx::query(sql).bind(t).bind(c).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        self.load_params().await
    }

    async fn load_params(&self) -> Result<()> {
        let rows: Vec<(i32, String, String)> = on_backend!(self, pool => {
            sqlx::query_as("SELECT pid, rtype, code FROM search_param").fetch_all(pool).await?
        });
        let mut params = self.params.write().unwrap_or_else(|e| e.into_inner());
        for (pid, rtype, code) in rows {
            params.entry(rtype).or_default().insert(code, pid);
        }
        Ok(())
    }
}

/// True for errors that mean "another writer got there first": the engine retries those.
pub fn is_write_conflict(err: &Error) -> bool {
    let Error::Store(sqlx::Error::Database(db)) = err else { return false };
    db.is_unique_violation() || matches!(db.code().as_deref(), Some("40001") | Some("40P01"))
}
