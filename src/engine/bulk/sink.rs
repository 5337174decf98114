//! Writing a job's NDJSON files into the database: lines are gathered into chunks, chunks into
//! files, and a file is closed (and the next begun) when it reaches the size limit.

use super::Claim;
use crate::error::Result;
use crate::resource::instant::now_ms;
use crate::store::{BulkFile, Store};

/// Bytes per stored chunk: big enough that the per-row cost vanishes, small enough to stream.
const CHUNK_BYTES: usize = 1024 * 1024;

/// The files of one job, numbered in the order they are begun.
pub(crate) struct Sink<'a> {
    store: &'a Store,
    claim: &'a Claim<'a>,
    max_file_bytes: u64,
    next_file_no: i32,
    /// At most one open file per (role, type).
    open: Vec<OpenFile>,
}

struct OpenFile {
    file: BulkFile,
    seq: i32,
    buf: Vec<u8>,
}

impl<'a> Sink<'a> {
    pub fn new(store: &'a Store, claim: &'a Claim<'a>, max_file_bytes: u64) -> Self {
        Sink { store, claim, max_file_bytes, next_file_no: 1, open: Vec::new() }
    }

    /// Appends one line (without its newline) to the current file of `role`/`rtype`, beginning a
    /// file if needed. False when the job was cancelled or taken over: stop writing.
    pub async fn line(&mut self, role: &str, rtype: &str, line: &[u8]) -> Result<bool> {
        let new_len = line.len() as u64 + 1;
        let at = self.open.iter().position(|f| f.file.role == role && f.file.rtype == rtype);
        let at = match at {
            Some(i) if self.open[i].file.bytes as u64 + new_len > self.max_file_bytes => {
                let full = self.open.swap_remove(i);
                if !self.complete(full).await? {
                    return Ok(false);
                }
                None
            }
            other => other,
        };
        let i = match at {
            Some(i) => i,
            None => {
                let file_no = self.next_file_no;
                self.next_file_no += 1;
                self.open.push(OpenFile {
                    file: BulkFile { file_no, role: role.into(), rtype: rtype.into(), count: 0, bytes: 0 },
                    seq: 0,
                    buf: Vec::with_capacity(CHUNK_BYTES + 64 * 1024),
                });
                self.open.len() - 1
            }
        };
        let f = &mut self.open[i];
        f.buf.extend_from_slice(line);
        f.buf.push(b'\n');
        f.file.count += 1;
        f.file.bytes += new_len as i64;
        if f.buf.len() >= CHUNK_BYTES {
            return flush(self.store, self.claim, f).await;
        }
        Ok(true)
    }

    /// Completes every open file. False when the job was lost meanwhile.
    pub async fn close(&mut self) -> Result<bool> {
        for f in std::mem::take(&mut self.open) {
            if !self.complete(f).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn complete(&self, mut f: OpenFile) -> Result<bool> {
        if !flush(self.store, self.claim, &mut f).await? {
            return Ok(false);
        }
        if f.file.count > 0 {
            self.store.add_file(&self.claim.job.id, &f.file).await?;
        }
        Ok(true)
    }
}

async fn flush(store: &Store, claim: &Claim<'_>, f: &mut OpenFile) -> Result<bool> {
    if f.buf.is_empty() {
        return Ok(true);
    }
    let written =
        store.write_chunk(&claim.job.id, Some(claim.owner), f.file.file_no, f.seq, &f.buf, now_ms()).await?;
    f.seq += 1;
    f.buf.clear();
    Ok(written)
}
