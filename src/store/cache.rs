//! A cache of current versions for reads on SQLite, where this process is the only writer:
//! every commit publishes what it wrote, so the cache cannot serve a stale version. (PostgreSQL
//! serves several nodes; there every read goes to the database.)
//!
//! Profiling showed a SQLite read spends most of its time handing the query to sqlx's
//! connection thread and back; a hit skips that entirely.

use std::sync::{Arc, Mutex};

use foldhash::HashMap;

use super::Version;

/// Bytes of resource bodies kept before the cache starts over.
const BUDGET: usize = 64 * 1024 * 1024;

#[derive(Default)]
pub struct Cache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By type, then id: looked up without building a key.
    map: HashMap<String, HashMap<String, Arc<Version>>>,
    bytes: usize,
}

impl Cache {
    pub fn get(&self, rtype: &str, id: &str) -> Option<Arc<Version>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.get(rtype)?.get(id).cloned()
    }

    pub fn forget(&self, rtype: &str, id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = inner.map.get_mut(rtype).and_then(|m| m.remove(id)) {
            inner.bytes -= old.body.len();
        }
    }

    /// Keeps `v` unless a newer version is already cached: a reader that fetched an old row
    /// must not overwrite what a writer committed meanwhile.
    pub fn put(&self, v: Arc<Version>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let cached = inner.map.get(&v.rtype).and_then(|m| m.get(&v.id));
        if cached.is_some_and(|old| old.version > v.version) {
            return;
        }
        if inner.bytes + v.body.len() > BUDGET {
            // Starting over is crude but cheap, and keeps the hot set after a short warm-up.
            inner.map.clear();
            inner.bytes = 0;
        }
        inner.bytes += v.body.len();
        let of_type = match inner.map.get_mut(&v.rtype) {
            Some(m) => m,
            None => inner.map.entry(v.rtype.clone()).or_default(),
        };
        if let Some(old) = of_type.insert(v.id.clone(), v) {
            inner.bytes -= old.body.len();
        }
    }
}
