//! The engine: the one write path and the one read path. Every front door (REST, later bundles,
//! HL7 v2 and import) calls these functions; none of them touches the store directly.
//!
//! A write validates the resource, resolves conditions, assigns the id and version and writes
//! resource + history + index rows in one store transaction. Writers that lose a race (a unique
//! violation or serialization failure) are retried from the start, so no update is lost.

pub mod audit;
mod bulk;
mod confine;
mod draft;
mod group;
mod include;
mod load;
mod params;
mod read;
mod search;
mod transaction;
mod write;

pub use bulk::{BulkSettings, ExportLevel, ExportParams, JobState, Upload};
pub use confine::See;
pub use group::{Committed, GroupCommit, Part, PartCommit};
pub use load::{LOAD_BATCH, Loader, Origin, Rejection, content_id};
pub use read::History;
pub use search::{Scope, SearchResult, subset};
pub use transaction::{Method, Outcome, Request, parse_bundle, replace_references};
pub use write::{Deleted, Written};

use crate::error::{Error, Result};
use crate::search::Registry;
use crate::store::{Store, is_write_conflict};

/// Paging limits applied to search and history.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub default_count: usize,
    pub max_count: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { default_count: 20, max_count: 1000 }
    }
}

pub struct Engine {
    pub store: Store,
    pub limits: Limits,
    /// The official search parameters and this database's custom ones.
    pub registry: std::sync::Arc<Registry>,
    pub bulk: BulkSettings,
    /// Wakes this node's job worker when a job is queued here.
    jobs: tokio::sync::Notify,
}

/// Attempts at a write that keeps losing races before giving up with 409.
const WRITE_ATTEMPTS: usize = 8;

impl Engine {
    pub async fn open(database_url: &str, limits: Limits) -> Result<Engine> {
        let store = Store::open(database_url).await?;
        let registry = std::sync::Arc::new(Registry::new());
        let types = crate::resource::resource_types().iter().map(String::as_str);
        store.register_params(&crate::search::indexed_params(&registry, types)).await?;
        let engine =
            Engine { store, limits, registry, bulk: BulkSettings::default(), jobs: Default::default() };
        engine.load_custom_params().await?;
        Ok(engine)
    }

    pub fn page_size(&self, requested: Option<usize>) -> usize {
        requested.unwrap_or(self.limits.default_count).min(self.limits.max_count)
    }

    /// Runs one write transaction, retrying it when a concurrent writer got there first.
    async fn retry<T, F: Future<Output = Result<T>>>(&self, attempt: impl Fn() -> F) -> Result<T> {
        for _ in 1..WRITE_ATTEMPTS {
            match attempt().await {
                Err(e) if is_write_conflict(&e) => {
                    tracing::debug!("write conflict, retrying: {e}");
                    continue;
                }
                other => return other,
            }
        }
        attempt().await.map_err(|e| {
            if is_write_conflict(&e) {
                Error::Conflict("the resource is being changed concurrently; try again".into())
            } else {
                e
            }
        })
    }
}

/// A server-assigned resource id: a UUID whose first bits are the time (version 7), so that
/// new rows go to the end of every index keyed by id instead of a random page of each — the
/// pages a commit writes are shared by the resources written together.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A stable 64-bit FNV-1a hash of the parts: it must agree across nodes, builds and runs
/// (advisory-lock keys, content-derived ids).
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn lock_key(parts: &[&str]) -> i64 {
    stable_hash(parts) as i64
}
