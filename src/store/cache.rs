//! A cache of current versions for reads on SQLite, where this process is the only writer:
//! every commit publishes what it wrote, so the cache cannot serve a stale version. (PostgreSQL
//! serves several nodes; there every read goes to the database.)
//!
//! Profiling showed a SQLite read spends most of its time handing the query to sqlx's
//! connection thread and back; a hit skips that entirely.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Version;

/// Bytes of resource bodies kept before the cache starts over.
const BUDGET: usize = 64 * 1024 * 1024;

#[derive(Default)]
pub struct Cache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<(String, String), Arc<Version>>,
    bytes: usize,
}

impl Cache {
    pub fn get(&self, rtype: &str, id: &str) -> Option<Arc<Version>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.get(&(rtype.to_string(), id.to_string())).cloned()
    }

    pub fn forget(&self, rtype: &str, id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = inner.map.remove(&(rtype.to_string(), id.to_string())) {
            inner.bytes -= old.body.len();
        }
    }

    /// Keeps `v` unless a newer version is already cached: a reader that fetched an old row
    /// must not overwrite what a writer committed meanwhile.
    pub fn put(&self, v: Arc<Version>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (v.rtype.clone(), v.id.clone());
        if inner.map.get(&key).is_some_and(|old| old.version > v.version) {
            return;
        }
        if inner.bytes + v.body.len() > BUDGET {
            // Starting over is crude but cheap, and keeps the hot set after a short warm-up.
            inner.map.clear();
            inner.bytes = 0;
        }
        inner.bytes += v.body.len();
        if let Some(old) = inner.map.insert(key, v) {
            inner.bytes -= old.body.len();
        }
    }
}
