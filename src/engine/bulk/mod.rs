//! Bulk data jobs: `$export` (Bulk Data Access IG 2.0) and `$import` run in the background.
//!
//! A kick-off checks the request and stores a job; a worker on any node claims it (see
//! `store::bulk`), writes its files into the database in chunks and keeps its claim alive with a
//! heartbeat. A node that stops releases its job; a node that dies leaves a heartbeat that goes
//! stale, and the job is claimed again and restarted from the beginning. Files live in the
//! database so that every node of a shared PostgreSQL can serve them.

mod export;
mod import;
mod sink;

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use super::Engine;
use crate::error::{Error, Issue, IssueCode, Result};
use crate::resource::instant::now_ms;
use crate::store::{BulkFile, Dialect, Job};

pub use export::{ExportLevel, ExportParams};
pub use import::Upload;

/// Settings of the background jobs.
#[derive(Debug, Clone)]
pub struct BulkSettings {
    /// An output file is closed and the next begun once it reaches this size.
    pub max_file_bytes: u64,
    /// Whether this node runs jobs at all (a node may only serve requests).
    pub run_jobs: bool,
    /// Finished jobs and their files are deleted after this long.
    pub retention: Duration,
}

impl Default for BulkSettings {
    fn default() -> Self {
        BulkSettings {
            max_file_bytes: 64 * 1024 * 1024,
            run_jobs: true,
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// How long a claimed job may go without a heartbeat before another node takes it over.
const CLAIM_TIMEOUT_MS: i64 = 30_000;
/// A running job touches its heartbeat (and progress) at least this often.
const HEARTBEAT_MS: i64 = 2_000;
/// How often an idle worker looks for jobs when not woken by a kick-off on this node.
const POLL: Duration = Duration::from_secs(2);

/// What a status request finds.
pub enum JobState {
    /// Queued or running, with a progress text for `X-Progress`.
    InProgress(String),
    Complete {
        job: Job,
        files: Vec<BulkFile>,
    },
    Failed(Error),
}

/// How a job run ended when it did not fail.
enum Ran {
    Complete,
    /// Cancelled (its row is gone) or taken over by another node.
    Lost,
    /// This node is stopping: the job goes back to the queue.
    Stopped,
}

/// A job's claim, passed down to whatever writes its files.
pub(crate) struct Claim<'a> {
    pub job: &'a Job,
    pub owner: &'a str,
    pub stop: &'a watch::Receiver<bool>,
}

impl Claim<'_> {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

impl Engine {
    /// Stores a new job and wakes this node's worker.
    async fn queue(&self, kind: &str, request: &str, params: &impl Serialize) -> Result<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let params = serde_json::to_string(params).map_err(|e| Error::Internal(e.to_string()))?;
        self.store.create_job(&id, kind, "queued", request, &params, now_ms()).await?;
        self.jobs.notify_one();
        Ok(id)
    }

    /// The state of a job of `kind`; a job of another kind is not found under this name.
    pub async fn job_state(&self, kind: &str, id: &str) -> Result<JobState> {
        let job = self
            .store
            .job(id)
            .await?
            .filter(|j| j.kind == kind && j.status != "uploading")
            .ok_or_else(|| Error::NotFound(format!("no {kind} job {id}")))?;
        Ok(match job.status.as_str() {
            "complete" => {
                let files = self.store.files(id).await?;
                JobState::Complete { job, files }
            }
            "failed" => {
                let stored: Vec<serde_json::Value> =
                    job.outcome.as_deref().and_then(|o| serde_json::from_str(o).ok()).unwrap_or_default();
                let mut issues: Vec<Issue> = stored.iter().filter_map(Issue::from_json).collect();
                if issues.is_empty() {
                    issues.push(Issue::new(IssueCode::Exception, "the job failed"));
                }
                JobState::Failed(Error::JobFailed(issues))
            }
            "queued" => JobState::InProgress("queued".into()),
            _ => JobState::InProgress(job.progress.unwrap_or_else(|| "started".into())),
        })
    }

    /// Cancels a job (or deletes a finished one) with all its files.
    pub async fn delete_job(&self, kind: &str, id: &str) -> Result<()> {
        match self.store.job(id).await? {
            Some(job) if job.kind == kind => {
                self.store.delete_job(id).await?;
                Ok(())
            }
            _ => Err(Error::NotFound(format!("no {kind} job {id}"))),
        }
    }

    /// The background worker: claims and runs jobs one at a time until `stop` turns true.
    /// One job at a time keeps a node's interactive requests ahead of its bulk work.
    pub async fn run_jobs(&self, mut stop: watch::Receiver<bool>) {
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let mut last_expiry = 0;
        while !*stop.borrow() {
            let now = now_ms();
            if now - last_expiry > 60_000 {
                last_expiry = now;
                if let Err(e) = self.expire_jobs(now).await {
                    tracing::warn!("cannot expire bulk jobs: {e}");
                }
            }
            // One process owns a SQLite file: a job left running there was orphaned by a crash.
            let stale = match self.store.dialect() {
                Dialect::Sqlite => now + 1,
                Dialect::Postgres => now - CLAIM_TIMEOUT_MS,
            };
            match self.store.claim_job(&owner, now, stale).await {
                Ok(Some(job)) => {
                    let claim = Claim { job: &job, owner: &owner, stop: &stop };
                    self.run_claimed(&claim).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("cannot claim bulk jobs: {e}"),
            }
            tokio::select! {
                _ = self.jobs.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn run_claimed(&self, claim: &Claim<'_>) {
        let job = claim.job;
        tracing::info!(job = %job.id, kind = %job.kind, "bulk job started");
        let ran = match self.store.clear_output(&job.id).await {
            Ok(()) => match job.kind.as_str() {
                "export" => self.run_export(claim).await,
                "import" => self.run_import(claim).await,
                other => Err(Error::Internal(format!("unknown job kind {other}"))),
            },
            Err(e) => Err(e),
        };
        let now = now_ms();
        let finished = match ran {
            Ok(Ran::Complete) => self.store.finish_job(&job.id, claim.owner, "complete", None, now).await,
            Ok(Ran::Stopped) => self.store.finish_job(&job.id, claim.owner, "queued", None, now).await,
            // Cancelled (the job and its files went in one transaction, and no chunk can follow:
            // see `store::bulk`) or taken over by another node: nothing left to do here.
            Ok(Ran::Lost) => Ok(true),
            Err(e) => {
                tracing::warn!(job = %job.id, "bulk job failed: {e}");
                let issues: Vec<serde_json::Value> = e.issues().iter().map(Issue::to_json).collect();
                let outcome = serde_json::to_string(&issues).ok();
                self.store.finish_job(&job.id, claim.owner, "failed", outcome.as_deref(), now).await
            }
        };
        match finished {
            Ok(_) => tracing::info!(job = %job.id, "bulk job ended"),
            Err(e) => tracing::warn!(job = %job.id, "cannot record the end of a bulk job: {e}"),
        }
    }

    async fn expire_jobs(&self, now: i64) -> Result<()> {
        let before = now - self.bulk.retention.as_millis() as i64;
        for id in self.store.finished_jobs(before).await? {
            self.store.delete_job(&id).await?;
        }
        Ok(())
    }
}

impl Engine {
    /// A completed file of a finished job.
    pub async fn job_file(&self, id: &str, file_no: i32) -> Result<BulkFile> {
        let missing = || Error::NotFound(format!("no bulk file {id}/{file_no}"));
        let job = self.store.job(id).await?.ok_or_else(missing)?;
        if job.status != "complete" {
            return Err(missing());
        }
        self.store.files(id).await?.into_iter().find(|f| f.file_no == file_no).ok_or_else(missing)
    }

    /// Chunk `seq` of a file, `None` past its end.
    pub async fn job_file_chunk(&self, id: &str, file_no: i32, seq: i32) -> Result<Option<Vec<u8>>> {
        self.store.chunk(id, file_no, seq).await
    }
}
