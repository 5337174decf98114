//! `$import` over HTTP: an NDJSON upload (optionally gzip-compressed) stored with its job, then
//! loaded in the background through the same [`Loader`] as `hearth import`.
//!
//! The upload is stored before the kick-off answers, so the job survives a restart like an
//! export does. The result follows the Bulk Data import drafts: `output` holds informational
//! OperationOutcomes (one per type loaded), `error` one OperationOutcome per refused line.

use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::sink::Sink;
use super::{Claim, Ran};
use crate::engine::{Engine, Loader, Origin, Rejection};
use crate::error::{Error, IssueCode, Result};
use crate::resource::instant::now_ms;
use crate::store::BulkFile;

/// Upload bytes per stored chunk.
const CHUNK_BYTES: usize = 1024 * 1024;
/// The file number of the upload; outputs are numbered from 1.
const INPUT_FILE: i32 = 0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportParams {
    /// When the upload was accepted (ms): the manifest's `transactionTime`.
    pub transaction_time: i64,
}

/// An upload being stored: bytes in, decompressed NDJSON chunks out.
pub struct Upload {
    pub id: String,
    gzip: Option<flate2::write::MultiGzDecoder<Vec<u8>>>,
    buf: Vec<u8>,
    seq: i32,
    bytes: u64,
    limit: u64,
}

impl Engine {
    /// Begins an import job whose input is uploaded next (not claimable until `finish`).
    pub async fn import_begin(&self, request: &str, gzip: bool, limit: u64) -> Result<Upload> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let params = serde_json::to_string(&ImportParams { transaction_time: now_ms() })
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.store.create_job(&id, "import", "uploading", request, &params, now_ms()).await?;
        Ok(Upload {
            id,
            gzip: gzip.then(|| flate2::write::MultiGzDecoder::new(Vec::new())),
            buf: Vec::with_capacity(CHUNK_BYTES),
            seq: 0,
            bytes: 0,
            limit,
        })
    }

    /// Stores the rest of the upload and queues the job.
    pub async fn import_finish(&self, mut upload: Upload) -> Result<String> {
        if let Some(gz) = upload.gzip.take() {
            let rest = gz.finish().map_err(|e| bad_gzip(&e))?;
            upload.take(rest)?;
        }
        upload.store_chunk(self).await?;
        let file = BulkFile {
            file_no: INPUT_FILE,
            role: "input".into(),
            rtype: "Bundle".into(),
            count: i64::from(upload.seq),
            bytes: upload.bytes as i64,
        };
        self.store.add_file(&upload.id, &file).await?;
        self.store.queue_job(&upload.id).await?;
        self.jobs.notify_one();
        Ok(upload.id)
    }

    /// Forgets an upload that failed part way.
    pub async fn import_abort(&self, upload: Upload) {
        if let Err(e) = self.store.delete_job(&upload.id).await {
            tracing::warn!(job = %upload.id, "cannot remove an aborted upload: {e}");
        }
    }

    pub(super) async fn run_import(&self, claim: &Claim<'_>) -> Result<Ran> {
        let mut sink = Sink::new(&self.store, claim, self.bulk.max_file_bytes);
        let mut loader = Loader::new(self);
        // The audit log is the server's own record, not something a client can load.
        loader.refused_types = &["AuditEvent"];
        let mut pending: Vec<u8> = Vec::new();
        let mut line_no = 0;
        let mut last_touch = now_ms();
        let mut seq = 0;
        loop {
            if claim.stopping() {
                return Ok(Ran::Stopped);
            }
            let chunk = self.store.chunk(&claim.job.id, INPUT_FILE, seq).await?;
            let end = chunk.is_none();
            seq += 1;
            pending.extend(chunk.unwrap_or_default());
            // Whole lines only; the last partial line waits for the next chunk.
            let cut = if end {
                pending.len()
            } else {
                pending.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
            };
            let rest = pending.split_off(cut);
            if pending.last() == Some(&b'\n') {
                pending.pop();
            }
            for line in pending.split(|b| *b == b'\n').filter(|_| !pending.is_empty()) {
                line_no += 1;
                loader.line(Origin { file: "upload".into(), line: line_no }, line).await?;
                if !errors(&mut sink, loader.take_rejected()).await? {
                    return Ok(Ran::Lost);
                }
            }
            pending = rest;
            if end {
                break;
            }
            let now = now_ms();
            if now - last_touch >= super::HEARTBEAT_MS {
                last_touch = now;
                let progress =
                    format!("{} resources loaded, {} refused", loader.loaded_total(), loader.rejected_total);
                if !self.store.touch_job(&claim.job.id, claim.owner, now, &progress).await? {
                    return Ok(Ran::Lost);
                }
            }
        }
        loader.flush().await?;
        if !errors(&mut sink, loader.take_rejected()).await? {
            return Ok(Ran::Lost);
        }
        if loader.unchanged > 0 {
            let outcome = json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "information", "code": "informational",
                "diagnostics": format!("{} resources were stored already with the same content and not written again",
                    loader.unchanged),
            }]});
            if !sink.line("output", "OperationOutcome", outcome.to_string().as_bytes()).await? {
                return Ok(Ran::Lost);
            }
        }
        for (rtype, n) in &loader.loaded {
            let outcome = json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "information", "code": "informational",
                "diagnostics": format!("{n} {rtype} resources loaded"),
            }]});
            if !sink.line("output", "OperationOutcome", outcome.to_string().as_bytes()).await? {
                return Ok(Ran::Lost);
            }
        }
        Ok(if sink.close().await? { Ran::Complete } else { Ran::Lost })
    }
}

/// One OperationOutcome per refused line, in the job's `error` files.
async fn errors(sink: &mut Sink<'_>, rejected: Vec<Rejection>) -> Result<bool> {
    for r in rejected {
        let outcome = json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": IssueCode::Invalid.as_str(),
            "diagnostics": format!("line {}: {}", r.origin.line, r.reason),
        }]});
        if !sink.line("error", "OperationOutcome", outcome.to_string().as_bytes()).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn bad_gzip(e: &std::io::Error) -> Error {
    Error::invalid(IssueCode::Structure, format!("the upload is not valid gzip: {e}"))
}

impl Upload {
    /// Takes the next bytes of the request body.
    pub async fn write(&mut self, engine: &Engine, data: &[u8]) -> Result<()> {
        match &mut self.gzip {
            Some(gz) => {
                gz.write_all(data).map_err(|e| bad_gzip(&e))?;
                let out = std::mem::take(gz.get_mut());
                self.take(out)?;
            }
            None => self.take(data.to_vec())?,
        }
        if self.buf.len() >= CHUNK_BYTES {
            self.store_chunk(engine).await?;
        }
        Ok(())
    }

    fn take(&mut self, data: Vec<u8>) -> Result<()> {
        self.bytes += data.len() as u64;
        if self.bytes > self.limit {
            return Err(Error::PayloadTooLarge(usize::try_from(self.limit).unwrap_or(usize::MAX)));
        }
        if self.buf.is_empty() {
            self.buf = data;
        } else {
            self.buf.extend_from_slice(&data);
        }
        Ok(())
    }

    async fn store_chunk(&mut self, engine: &Engine) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        engine.store.write_chunk(&self.id, None, INPUT_FILE, self.seq, &self.buf, now_ms()).await?;
        self.seq += 1;
        self.buf.clear();
        Ok(())
    }
}
