//! Bulk loading, shared by `hearth import` and `$import`: resources are checked one by one,
//! written in all-or-nothing batches, and every refused resource is reported with where it came
//! from and why. Nothing is skipped silently.
//!
//! Resources keep their ids; one without an id gets an id derived from its content, so loading
//! the same input twice updates rather than duplicates.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio::task::JoinHandle;

use super::Engine;
use crate::error::{Error, Result};
use crate::resource::instant::now_ms;
use crate::search::Registry;
use crate::store::IndexRows;

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

/// A resource checked, stamped as a new version 1 and indexed, ready to write. Done on a
/// blocking thread while the previous batch is written: the two halves of a load overlap.
pub struct Prepared {
    pub origin: Origin,
    pub rtype: String,
    pub id: String,
    /// As given: a resource that exists already is stamped again as its next version.
    pub value: Value,
    pub last_updated: i64,
    pub body: Vec<u8>,
    pub index: IndexRows,
}

/// What a batch is made of before it is prepared.
enum Raw {
    Line(Vec<u8>),
    Value(Value),
}

/// Checks, stamps and indexes one resource; `validate` is false for callers that validated.
pub fn prepare(
    registry: &Registry,
    origin: Origin,
    mut v: Value,
    validate: bool,
) -> Result<Prepared, Box<Rejection>> {
    let reject =
        |origin: Origin, reason: String, resource: Value| Box::new(Rejection { origin, reason, resource });
    let Some(rtype) = v.get("resourceType").and_then(Value::as_str).map(str::to_string) else {
        return Err(reject(origin, "no resourceType".into(), v));
    };
    if v.get("id").is_none() {
        v["id"] = Value::String(content_id(&v));
    }
    let id = match v["id"].as_str() {
        Some(id) if crate::resource::valid_id(id) => id.to_string(),
        _ => return Err(reject(origin, format!("{} is not a valid id", v["id"]), v)),
    };
    if validate && let Err(e) = crate::resource::validate(&rtype, &v) {
        return Err(reject(origin, e.to_string(), v));
    }
    let now = now_ms();
    let stamped = crate::resource::stamp(v.clone(), &id, 1, now);
    if rtype == "SearchParameter"
        && let Err(e) = registry.check_custom(&id, &stamped)
    {
        return Err(reject(origin, e.to_string(), v));
    }
    let body = match serde_json::to_vec(&stamped) {
        Ok(b) => b,
        Err(e) => return Err(reject(origin, e.to_string(), v)),
    };
    let index = crate::search::index::extract(registry, &rtype, &stamped);
    Ok(Prepared { origin, rtype, id, value: v, last_updated: now, body, index })
}

fn prepare_batch(registry: &Registry, batch: Vec<(Origin, Raw)>) -> (Vec<Prepared>, Vec<Rejection>) {
    let mut ready = Vec::with_capacity(batch.len());
    let mut rejected = Vec::new();
    for (origin, raw) in batch {
        let v = match raw {
            Raw::Value(v) => v,
            Raw::Line(bytes) => {
                let Ok(line) = std::str::from_utf8(&bytes) else {
                    rejected.push(Rejection { origin, reason: "not UTF-8".into(), resource: Value::Null });
                    continue;
                };
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => v,
                    Err(e) => {
                        let resource = Value::String(line.to_string());
                        rejected.push(Rejection { origin, reason: format!("not JSON: {e}"), resource });
                        continue;
                    }
                }
            }
        };
        match prepare(registry, origin, v, true) {
            Ok(p) => ready.push(p),
            Err(r) => rejected.push(*r),
        }
    }
    (ready, rejected)
}

pub struct Loader<'a> {
    engine: &'a Engine,
    pending: Vec<(Origin, Raw)>,
    /// The batch being prepared on a blocking thread.
    preparing: Option<JoinHandle<(Vec<Prepared>, Vec<Rejection>)>>,
    /// Resources loaded, by type (written, or found stored already with the same content).
    pub loaded: BTreeMap<String, usize>,
    /// Of those, the ones stored already with the same content: not written again.
    pub unchanged: usize,
    /// Refused so far and not yet taken by the caller.
    rejected: Vec<Rejection>,
    pub rejected_total: usize,
    /// Types this load may not write (`$import` cannot write the audit log).
    pub refused_types: &'static [&'static str],
}

impl<'a> Loader<'a> {
    pub fn new(engine: &'a Engine) -> Self {
        Loader {
            engine,
            pending: Vec::new(),
            preparing: None,
            loaded: BTreeMap::new(),
            unchanged: 0,
            rejected: Vec::new(),
            rejected_total: 0,
            refused_types: &[],
        }
    }

    pub fn loaded_total(&self) -> usize {
        self.loaded.values().sum()
    }

    /// One NDJSON line (parsed when its batch is prepared).
    pub async fn line(&mut self, origin: Origin, bytes: &[u8]) -> Result<()> {
        self.push(origin, Raw::Line(bytes.to_vec())).await
    }

    /// One resource.
    pub async fn add(&mut self, origin: Origin, v: Value) -> Result<()> {
        self.push(origin, Raw::Value(v)).await
    }

    async fn push(&mut self, origin: Origin, raw: Raw) -> Result<()> {
        self.pending.push((origin, raw));
        if self.pending.len() >= LOAD_BATCH {
            self.cycle().await?;
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

    /// Starts preparing the pending batch, and writes the batch prepared before it meanwhile.
    async fn cycle(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.pending);
        let registry = self.engine.registry.clone();
        let next = tokio::task::spawn_blocking(move || prepare_batch(&registry, batch));
        match self.preparing.replace(next) {
            Some(previous) => self.write(previous).await,
            None => Ok(()),
        }
    }

    /// Writes everything batched so far.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.cycle().await?;
        }
        match self.preparing.take() {
            Some(last) => self.write(last).await,
            None => Ok(()),
        }
    }

    /// Writes a prepared batch. A batch the store refuses as a whole is retried one resource
    /// at a time, so that only the bad ones are rejected.
    async fn write(&mut self, prepared: JoinHandle<(Vec<Prepared>, Vec<Rejection>)>) -> Result<()> {
        let (mut ready, rejected) =
            prepared.await.map_err(|e| Error::Internal(format!("preparing a batch: {e}")))?;
        self.rejected_total += rejected.len();
        self.rejected.extend(rejected);
        if !self.refused_types.is_empty() {
            let (refused, kept): (Vec<Prepared>, Vec<Prepared>) =
                ready.into_iter().partition(|p| self.refused_types.contains(&p.rtype.as_str()));
            for p in refused {
                let reason = format!("{} resources cannot be loaded this way", p.rtype);
                self.reject(p.origin, reason, p.value);
            }
            ready = kept;
        }
        match self.engine.write_prepared(&ready).await {
            Ok(written) => {
                self.unchanged += ready.len() - written;
                ready.iter().for_each(|p| self.count(&p.rtype));
            }
            Err(Error::Invalid(_)) => {
                for p in ready {
                    match self.engine.write_prepared(std::slice::from_ref(&p)).await {
                        Ok(written) => {
                            self.unchanged += usize::from(written == 0);
                            self.count(&p.rtype)
                        }
                        Err(e @ Error::Invalid(_)) => self.reject(p.origin, e.to_string(), p.value),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn count(&mut self, rtype: &str) {
        *self.loaded.entry(rtype.to_string()).or_default() += 1;
    }
}

/// An id from the resource's content (FNV-1a), so an id-less resource loaded twice is one.
pub fn content_id(v: &Value) -> String {
    format!("imp-{:016x}", super::stable_hash(&[&v.to_string()]))
}
