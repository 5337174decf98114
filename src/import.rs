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

use crate::engine::{Engine, Loader, Origin, content_id};
use crate::error::{Error, Result};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub imported: usize,
    /// Of the imported, those stored already with the same content (not written again).
    pub unchanged: usize,
    pub rejected: usize,
    pub files: usize,
    /// Files in the directories given that are not NDJSON or JSON (named on stderr).
    pub skipped_files: usize,
}

pub struct Importer<'a> {
    loader: Loader<'a>,
    errors: Box<dyn Write + 'a>,
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
            loader: Loader::new(engine),
            errors,
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
                self.loader.line(origin, &buf).await?;
                self.drain()?;
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

    async fn add(&mut self, origin: Origin, v: Value) -> Result<()> {
        self.loader.add(origin, v).await?;
        self.drain()
    }

    async fn flush(&mut self) -> Result<()> {
        self.loader.flush().await?;
        self.drain()?;
        if self.progress && self.last_report.elapsed() >= Duration::from_secs(2) {
            self.report(false);
            self.last_report = Instant::now();
        }
        Ok(())
    }

    fn reject(&mut self, origin: &Origin, why: &str, resource: Value) -> Result<()> {
        self.loader.reject(origin.clone(), why.to_string(), resource);
        self.drain()
    }

    /// Writes the loader's rejections to the error file.
    fn drain(&mut self) -> Result<()> {
        for r in self.loader.take_rejected() {
            let line = json!({"file": r.origin.file, "line": r.origin.line, "error": r.reason, "resource": r.resource});
            writeln!(self.errors, "{line}").map_err(io_err)?;
        }
        self.summary.imported = self.loader.loaded_total();
        self.summary.unchanged = self.loader.unchanged;
        self.summary.rejected = self.loader.rejected_total;
        Ok(())
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

fn io_err(e: std::io::Error) -> Error {
    Error::Internal(format!("import: {e}"))
}
