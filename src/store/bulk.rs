//! Bulk data jobs and their files (`bulk_job`, `bulk_file`, `bulk_chunk`).
//!
//! Jobs are claimed with a conditional UPDATE (status and heartbeat in the WHERE clause) rather
//! than `FOR UPDATE SKIP LOCKED`, so the same statement serves both backends: of two nodes
//! racing for a job, the second UPDATE matches no row. A claimed job keeps its claim by touching
//! `heartbeat`; each chunk is written in the same transaction as that touch, so once a job is
//! cancelled (its row deleted) no chunk of it can be written any more.

use super::{Store, on_backend, on_writer};
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub request: String,
    pub params: String,
    pub created: i64,
    pub progress: Option<String>,
    pub finished: Option<i64>,
    pub outcome: Option<String>,
    /// The client that started the job, when authorization is on.
    pub client_id: Option<String>,
}

type JobRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn job((id, kind, status, request, params, created, progress, finished, outcome, client_id): JobRow) -> Job {
    Job { id, kind, status, request, params, created, progress, finished, outcome, client_id }
}

const JOB_COLUMNS: &str =
    "id, kind, status, request, params, created, progress, finished, outcome, client_id";

/// A completed file of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkFile {
    pub file_no: i32,
    pub role: String,
    pub rtype: String,
    pub count: i64,
    pub bytes: i64,
}

impl Store {
    /// A new job, `queued`, or `uploading` until its input is stored (then `queue_job`).
    pub async fn create_job(
        &self,
        id: &str,
        kind: &str,
        status: &str,
        request: &str,
        params: &str,
        now: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO bulk_job (id, kind, status, request, params, created, heartbeat) \
                   VALUES ($1, $2, $3, $4, $5, $6, $6)";
        on_writer!(self, pool => {
            sqlx::query(sql).bind(id).bind(kind).bind(status).bind(request).bind(params).bind(now).execute(pool).await?;
        });
        Ok(())
    }

    /// Binds a job to the client that started it.
    pub async fn set_job_client(&self, id: &str, client_id: &str) -> Result<()> {
        let sql = "UPDATE bulk_job SET client_id = $1 WHERE id = $2";
        on_writer!(self, pool => {
            sqlx::query(sql).bind(client_id).bind(id).execute(pool).await?;
        });
        Ok(())
    }

    pub async fn job(&self, id: &str) -> Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM bulk_job WHERE id = $1");
        let row: Option<JobRow> = on_backend!(self, pool =>
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(id).fetch_optional(pool).await?);
        Ok(row.map(job))
    }

    /// Claims the oldest job that is queued, or running with a heartbeat older than `stale`.
    pub async fn claim_job(&self, owner: &str, now: i64, stale: i64) -> Result<Option<Job>> {
        let candidates = "SELECT id FROM bulk_job WHERE status = 'queued' \
                          OR (status = 'running' AND heartbeat < $1) ORDER BY created LIMIT 8";
        let ids: Vec<(String,)> =
            on_writer!(self, pool => sqlx::query_as(candidates).bind(stale).fetch_all(pool).await?);
        let claim = "UPDATE bulk_job SET status = 'running', owner = $1, heartbeat = $2 \
                     WHERE id = $3 AND (status = 'queued' OR (status = 'running' AND heartbeat < $4))";
        for (id,) in ids {
            let done = on_writer!(self, pool => sqlx::query(claim).bind(owner).bind(now).bind(&id).bind(stale)
                .execute(pool).await?.rows_affected());
            if done == 1 {
                return self.job(&id).await;
            }
        }
        Ok(None)
    }

    /// Keeps a claim alive and records progress. False when the job was cancelled or taken over.
    pub async fn touch_job(&self, id: &str, owner: &str, now: i64, progress: &str) -> Result<bool> {
        let sql = "UPDATE bulk_job SET heartbeat = $1, progress = $2 WHERE id = $3 AND owner = $4 \
                   AND status = 'running'";
        let n = on_writer!(self, pool => sqlx::query(sql).bind(now).bind(progress).bind(id).bind(owner)
            .execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Ends a claimed job: `complete`, `failed` (with an OperationOutcome) or back to `queued`
    /// (the node is shutting down).
    pub async fn finish_job(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        outcome: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let finished = (status != "queued").then_some(now);
        let sql = "UPDATE bulk_job SET status = $1, outcome = $2, finished = $3, heartbeat = $4, owner = NULL \
                   WHERE id = $5 AND owner = $6 AND status = 'running'";
        let n = on_writer!(self, pool => sqlx::query(sql).bind(status).bind(outcome).bind(finished).bind(now)
            .bind(id).bind(owner).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Deletes a job and all its files. False if there was no such job.
    pub async fn delete_job(&self, id: &str) -> Result<bool> {
        let n = on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query("DELETE FROM bulk_job WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
            sqlx::query("DELETE FROM bulk_file WHERE job_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM bulk_chunk WHERE job_id = $1").bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
            n
        });
        Ok(n == 1)
    }

    /// Removes everything a job has written except its uploaded input: a restarted run begins
    /// again from nothing.
    pub async fn clear_output(&self, id: &str) -> Result<()> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM bulk_chunk WHERE job_id = $1 AND file_no NOT IN \
                         (SELECT file_no FROM bulk_file WHERE job_id = $1 AND role = 'input')")
                .bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM bulk_file WHERE job_id = $1 AND role <> 'input'")
                .bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Makes a job that was being uploaded claimable.
    pub async fn queue_job(&self, id: &str) -> Result<()> {
        on_writer!(self, pool => {
            sqlx::query("UPDATE bulk_job SET status = 'queued' WHERE id = $1").bind(id).execute(pool).await?;
        });
        Ok(())
    }

    /// Jobs that finished before `before`, or began uploading before it, for expiry.
    pub async fn finished_jobs(&self, before: i64) -> Result<Vec<String>> {
        // An upload that never finished (the node died during it) expires as well.
        let sql = "SELECT id FROM bulk_job WHERE (finished IS NOT NULL AND finished < $1) \
                   OR (status = 'uploading' AND created < $1)";
        let rows: Vec<(String,)> =
            on_backend!(self, pool => sqlx::query_as(sql).bind(before).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Writes one chunk of a file, if `owner` still holds the job (false otherwise: cancelled).
    /// An `owner` of `None` writes without a claim (a kick-off storing its upload).
    pub async fn write_chunk(
        &self,
        id: &str,
        owner: Option<&str>,
        file_no: i32,
        seq: i32,
        data: &[u8],
        now: i64,
    ) -> Result<bool> {
        let held = "UPDATE bulk_job SET heartbeat = $1 WHERE id = $2 AND owner = $3 AND status = 'running'";
        let insert = "INSERT INTO bulk_chunk (job_id, file_no, seq, data) VALUES ($1, $2, $3, $4)";
        let ok = on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let ok = match owner {
                Some(owner) => sqlx::query(held).bind(now).bind(id).bind(owner).execute(&mut *tx).await?.rows_affected() == 1,
                None => true,
            };
            if ok {
                sqlx::query(insert).bind(id).bind(file_no).bind(seq).bind(data).execute(&mut *tx).await?;
                tx.commit().await?;
            }
            ok
        });
        Ok(ok)
    }

    /// Records a completed file.
    pub async fn add_file(&self, id: &str, file: &BulkFile) -> Result<()> {
        let sql = "INSERT INTO bulk_file (job_id, file_no, role, rtype, count, bytes) VALUES ($1, $2, $3, $4, $5, $6)";
        on_writer!(self, pool => {
            sqlx::query(sql).bind(id).bind(file.file_no).bind(&file.role).bind(&file.rtype)
                .bind(file.count).bind(file.bytes).execute(pool).await?;
        });
        Ok(())
    }

    pub async fn files(&self, id: &str) -> Result<Vec<BulkFile>> {
        let sql =
            "SELECT file_no, role, rtype, count, bytes FROM bulk_file WHERE job_id = $1 ORDER BY file_no";
        let rows: Vec<(i32, String, String, i64, i64)> =
            on_backend!(self, pool => sqlx::query_as(sql).bind(id).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(|(file_no, role, rtype, count, bytes)| BulkFile { file_no, role, rtype, count, bytes })
            .collect())
    }

    /// One chunk of a file, or `None` past its end.
    pub async fn chunk(&self, id: &str, file_no: i32, seq: i32) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT data FROM bulk_chunk WHERE job_id = $1 AND file_no = $2 AND seq = $3";
        let row: Option<(Vec<u8>,)> = on_backend!(self, pool =>
            sqlx::query_as(sql).bind(id).bind(file_no).bind(seq).fetch_optional(pool).await?);
        Ok(row.map(|r| r.0))
    }
}
