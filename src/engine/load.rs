//! Bulk loading, shared by `hearth import` and `$import`: resources are checked one by one,
//! written in all-or-nothing batches, and every refused resource is reported with where it came
//! from and why. Nothing is skipped silently.
//!
//! Resources keep their ids; one without an id gets an id derived from its content, so loading
//! the same input twice updates rather than duplicates.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Engine;
use crate::error::{Error, Result};

/// Resources per transaction.
pub const LOAD_BATCH: usize = 1000;

/// Where a resource came from: a file (or upload) and a line (0 for a whole-file document).
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

/// A refused resource.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub origin: Origin,
    pub reason: String,
    pub resource: Value,
}

pub struct Loader<'a> {
    engine: &'a Engine,
    batch: Vec<(Origin, Value)>,
    /// Resources written, by type.
    pub loaded: BTreeMap<String, usize>,
    /// Refused so far and not yet taken by the caller.
    rejected: Vec<Rejection>,
    pub rejected_total: usize,
}

impl<'a> Loader<'a> {
    pub fn new(engine: &'a Engine) -> Self {
        Loader { engine, batch: Vec::new(), loaded: BTreeMap::new(), rejected: Vec::new(), rejected_total: 0 }
    }

    pub fn loaded_total(&self) -> usize {
        self.loaded.values().sum()
    }

    /// One NDJSON line: parsed, checked, and batched (or rejected).
    pub async fn line(&mut self, origin: Origin, bytes: &[u8]) -> Result<()> {
        let Ok(line) = std::str::from_utf8(bytes) else {
            self.reject(origin, "not UTF-8".into(), Value::Null);
            return Ok(());
        };
        if line.trim().is_empty() {
            return Ok(());
        }
        match serde_json::from_str::<Value>(line) {
            Ok(v) => self.add(origin, v).await,
            Err(e) => {
                self.reject(origin, format!("not JSON: {e}"), Value::String(line.to_string()));
                Ok(())
            }
        }
    }

    /// Checks one resource; a good one joins the batch, which is written when full.
    pub async fn add(&mut self, origin: Origin, mut v: Value) -> Result<()> {
        let Some(rtype) = v.get("resourceType").and_then(Value::as_str).map(str::to_string) else {
            self.reject(origin, "no resourceType".into(), v);
            return Ok(());
        };
        if v.get("id").is_none() {
            v["id"] = Value::String(content_id(&v));
        }
        if let Err(e) = crate::resource::validate(&rtype, &v) {
            self.reject(origin, e.to_string(), v);
            return Ok(());
        }
        self.batch.push((origin, v));
        if self.batch.len() >= LOAD_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    pub fn reject(&mut self, origin: Origin, reason: String, resource: Value) {
        self.rejected_total += 1;
        self.rejected.push(Rejection { origin, reason, resource });
    }

    /// The rejections since the last call.
    pub fn take_rejected(&mut self) -> Vec<Rejection> {
        std::mem::take(&mut self.rejected)
    }

    /// Writes the batch. A batch the store refuses as a whole is retried one resource at a
    /// time, so that only the bad ones are rejected.
    pub async fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let values: Vec<Value> = batch.iter().map(|(_, v)| v.clone()).collect();
        match self.engine.import_validated(&values).await {
            Ok(_) => {
                for v in &values {
                    self.count(v);
                }
            }
            Err(Error::Invalid(_)) => {
                for (origin, v) in batch {
                    match self.engine.import_validated(std::slice::from_ref(&v)).await {
                        Ok(_) => self.count(&v),
                        Err(e @ Error::Invalid(_)) => self.reject(origin, e.to_string(), v),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn count(&mut self, v: &Value) {
        let rtype = v.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        *self.loaded.entry(rtype.to_string()).or_default() += 1;
    }
}

/// An id from the resource's content (FNV-1a), so an id-less resource loaded twice is one.
pub fn content_id(v: &Value) -> String {
    format!("imp-{:016x}", super::stable_hash(&[&v.to_string()]))
}
