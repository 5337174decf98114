//! `hearth import`: NDJSON files, Bundles (or single resources) in `.json` files, and `.gz` of
//! either, from files or directories, through the engine's all-or-nothing `import` in batches.
//!
//! Every rejected resource is written to an error file with its place and reason; nothing is
//! skipped silently. Resources keep their ids, so running the same import again updates rather
//! than duplicates; a resource without an id gets one derived from its content, for the same
//! reason.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::engine::Engine;
use crate::error::{Error, Result};

/// Resources per transaction.
const BATCH: usize = 1000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub imported: usize,
    pub rejected: usize,
    pub files: usize,
    /// Files in the directories given that are not NDJSON or JSON (named on stderr).
    pub skipped_files: usize,
}

/// Where a resource came from, for the error file.
struct Origin {
    file: String,
    line: usize,
}

pub struct Importer<'a> {
    engine: &'a Engine,
    errors: Box<dyn Write + 'a>,
    batch: Vec<(Origin, Value)>,
    summary: Summary,
    started: Instant,
    last_report: Instant,
    progress: bool,
    /// Bytes of input (as stored, compressed or not) in all, and read so far: the ETA.
    total_bytes: u64,
    read_bytes: Arc<AtomicU64>,
}

/// Counts the bytes read from a file, before any decompression.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<'a> Importer<'a> {
    pub fn new(engine: &'a Engine, errors: Box<dyn Write + 'a>, progress: bool) -> Self {
        let now = Instant::now();
        Importer {
            engine,
            errors,
            batch: Vec::new(),
            summary: Summary::default(),
            started: now,
            last_report: now,
            progress,
            total_bytes: 0,
            read_bytes: Arc::default(),
        }
    }

    /// Imports every file below each path, then the rest of the last batch.
    /// `exclude` is the error file, never read as input.
    pub async fn run(mut self, paths: &[PathBuf], exclude: Option<&Path>) -> Result<Summary> {
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        for p in paths {
            if !p.is_dir() && !importable(p) {
                return Err(Error::invalid(
                    crate::error::IssueCode::NotSupported,
                    format!("{}: not a .ndjson or .json file (or .gz of one)", p.display()),
                ));
            }
            collect_files(p, &mut files, &mut skipped)?;
        }
        let exclude = exclude.and_then(|e| e.canonicalize().ok());
        files.retain(|f| f.canonicalize().ok() != exclude);
        for s in &skipped {
            eprintln!("skipped {}: not a .ndjson or .json file", s.display());
        }
        self.summary.skipped_files = skipped.len();
        files.sort();
        self.total_bytes = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
        for f in files {
            self.file(&f).await?;
            self.summary.files += 1;
        }
        self.flush().await?;
        self.errors.flush().map_err(io_err)?;
        if self.progress {
            self.report(true);
        }
        Ok(self.summary)
    }

    async fn file(&mut self, path: &Path) -> Result<()> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(io_err)?;
        let raw: Box<dyn Read> = Box::new(Counting { inner: file, count: self.read_bytes.clone() });
        let reader: Box<dyn Read> =
            if name.ends_with(".gz") { Box::new(flate2::read::MultiGzDecoder::new(raw)) } else { raw };
        let base = name.trim_end_matches(".gz");
        if base.ends_with(".ndjson") {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            let mut number = 0;
            loop {
                buf.clear();
                if reader.read_until(b'\n', &mut buf).map_err(io_err)? == 0 {
                    break;
                }
                number += 1;
                let origin = Origin { file: name.clone(), line: number };
                let Ok(line) = std::str::from_utf8(&buf) else {
                    self.reject(&origin, "not UTF-8", Value::Null)?;
                    continue;
                };
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => self.add(origin, v).await?,
                    Err(e) => {
                        self.reject(&origin, &format!("not JSON: {e}"), Value::String(line.to_string()))?
                    }
                }
            }
        } else {
            let mut text = String::new();
            let mut reader = reader;
            reader.read_to_string(&mut text).map_err(io_err)?;
            let origin = Origin { file: name.clone(), line: 0 };
            match serde_json::from_str::<Value>(&text) {
                Ok(v) if v.get("resourceType").and_then(Value::as_str) == Some("Bundle") => {
                    let entries = v.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
                    // Entries refer to each other by fullUrl (urn:uuid:…): give every resource
                    // its id first, then point those references at Type/id.
                    let mut resources: Vec<Option<Value>> = Vec::with_capacity(entries.len());
                    let mut aliases = std::collections::HashMap::new();
                    for e in &entries {
                        let mut r = e.get("resource").cloned();
                        if let Some(r) = r.as_mut().filter(|r| r.get("id").is_none()) {
                            r["id"] = Value::String(content_id(r));
                        }
                        if let (Some(full), Some(r)) = (e.get("fullUrl").and_then(Value::as_str), &r)
                            && let (Some(t), Some(id)) = (r["resourceType"].as_str(), r["id"].as_str())
                        {
                            aliases.insert(full.to_string(), format!("{t}/{id}"));
                        }
                        resources.push(r);
                    }
                    for (i, (e, r)) in entries.into_iter().zip(resources).enumerate() {
                        let origin = Origin { file: format!("{name}#entry[{i}]"), line: 0 };
                        match r {
                            Some(mut r) => {
                                crate::engine::replace_references(&mut r, &aliases);
                                self.add(origin, r).await?
                            }
                            None => self.reject(&origin, "the entry has no resource", e)?,
                        }
                    }
                }
                Ok(v) => self.add(origin, v).await?,
                Err(e) => self.reject(&origin, &format!("not JSON: {e}"), Value::Null)?,
            }
        }
        Ok(())
    }

    /// Checks one resource; a good one joins the batch.
    async fn add(&mut self, origin: Origin, mut v: Value) -> Result<()> {
        let Some(rtype) = v.get("resourceType").and_then(Value::as_str).map(str::to_string) else {
            return self.reject(&origin, "no resourceType", v);
        };
        if v.get("id").is_none() {
            let id = content_id(&v);
            v["id"] = Value::String(id);
        }
        if let Err(e) = crate::resource::validate(&rtype, &v) {
            return self.reject(&origin, &e.to_string(), v);
        }
        self.batch.push((origin, v));
        if self.batch.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let values: Vec<Value> = batch.iter().map(|(_, v)| v.clone()).collect();
        match self.engine.import_validated(&values).await {
            Ok(n) => self.summary.imported += n,
            // A whole batch refused (e.g. an id the checks let through): try one by one, so only
            // the bad ones are rejected.
            Err(Error::Invalid(_)) => {
                for (origin, v) in batch {
                    match self.engine.import_validated(std::slice::from_ref(&v)).await {
                        Ok(n) => self.summary.imported += n,
                        Err(e @ Error::Invalid(_)) => self.reject(&origin, &e.to_string(), v)?,
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
        if self.progress && self.last_report.elapsed() >= Duration::from_secs(2) {
            self.report(false);
            self.last_report = Instant::now();
        }
        Ok(())
    }

    fn reject(&mut self, origin: &Origin, why: &str, resource: Value) -> Result<()> {
        self.summary.rejected += 1;
        let line = json!({"file": origin.file, "line": origin.line, "error": why, "resource": resource});
        writeln!(self.errors, "{line}").map_err(io_err)
    }

    fn report(&self, last: bool) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let done = self.read_bytes.load(Ordering::Relaxed) as f64 / self.total_bytes.max(1) as f64;
        let eta = if last || done <= 0.0 {
            String::new()
        } else {
            format!(", {:.0}% read, about {:.0} s left", 100.0 * done, secs * (1.0 - done) / done)
        };
        eprintln!(
            "{} {} resources ({:.0}/s), {} rejected, {} files{eta}",
            if last { "imported" } else { "importing:" },
            self.summary.imported,
            self.summary.imported as f64 / secs,
            self.summary.rejected,
            self.summary.files
        );
    }
}

fn importable(path: &Path) -> bool {
    let name = path.to_string_lossy();
    let base = name.trim_end_matches(".gz");
    base.ends_with(".ndjson") || base.ends_with(".json")
}

/// Files below `path`. Linked directories are not followed (a link loop must not recurse).
fn collect_files(path: &Path, out: &mut Vec<PathBuf>, skipped: &mut Vec<PathBuf>) -> Result<()> {
    let meta =
        std::fs::symlink_metadata(path).map_err(|e| Error::NotFound(format!("{}: {e}", path.display())))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io_err)? {
            collect_files(&entry.map_err(io_err)?.path(), out, skipped)?;
        }
    } else if meta.is_symlink() && path.is_dir() {
        skipped.push(path.to_path_buf());
    } else if importable(path) {
        out.push(path.to_path_buf());
    } else {
        skipped.push(path.to_path_buf());
    }
    Ok(())
}

/// An id from the resource's content (FNV-1a), so an id-less resource imported twice is one.
fn content_id(v: &Value) -> String {
    format!("imp-{:016x}", crate::engine::stable_hash(&[&v.to_string()]))
}

fn io_err(e: std::io::Error) -> Error {
    Error::Internal(format!("import: {e}"))
}
