//! Group commit: several independent transactions in one database transaction, each inside
//! its own savepoint. Every commit costs a flush of the pages it changed, and successive
//! transactions change mostly the same pages (the ends of the same indexes), so one commit
//! for a group writes far less than one per transaction. A part that fails is rolled back to
//! its savepoint and answered alone; the others commit.

use super::Engine;
use super::transaction::{Change, Outcome, Request, check_requests};
use crate::error::{Error, Result};
use crate::store::hl7::Received;
use crate::store::is_write_conflict;

/// One transaction of a group, and the HL7 message it records when it commits. Its requests
/// are checked when it is made, by the sender's task: the group's writer, which every part
/// waits for, only writes.
pub struct Part {
    requests: Vec<Request>,
    record: Received,
}

impl Part {
    /// A part whose requests pass the checks a transaction makes before the database.
    pub fn new(requests: Vec<Request>, record: Received) -> Result<Part> {
        check_requests(&requests)?;
        Ok(Part { requests, record })
    }
}

/// What became of one part of a group.
pub enum Committed {
    /// Its writes, committed with its record.
    Written(Vec<Result<Outcome>>),
    /// Its message had been accepted already (a copy sent again): nothing was written.
    AlreadyRecorded,
}

impl Engine {
    /// Commits each part whose transaction succeeds, in one database transaction; the results
    /// come back in the parts' order. A conflict retries the whole group.
    pub async fn transaction_group(&self, parts: &[Part]) -> Vec<Result<Committed>> {
        // Server-assigned ids for creates, fixed across retries.
        let ids: Vec<Vec<String>> =
            parts.iter().map(|p| p.requests.iter().map(|_| super::new_id()).collect()).collect();
        let written = match self.retry(|| self.try_group(parts, &ids)).await {
            Ok(written) => written,
            // Nothing committed: every part in the group fails with it.
            Err(e) => {
                return parts.iter().map(|_| Err(Error::Internal(format!("not stored: {e}")))).collect();
            }
        };
        let mut out = Vec::with_capacity(parts.len());
        for (part, w) in parts.iter().zip(written) {
            out.push(match w {
                Ok(Some(changes)) => Ok(Committed::Written(self.finish(&part.requests, changes).await)),
                Ok(None) => Ok(Committed::AlreadyRecorded),
                Err(e) => Err(e),
            });
        }
        out
    }

    /// Each part in its savepoint: its changes, `None` when its message was recorded already,
    /// or its own error.
    async fn try_group(
        &self,
        parts: &[Part],
        ids: &[Vec<String>],
    ) -> Result<Vec<Result<Option<Vec<Option<Change>>>>>> {
        let mut tx = self.store.begin().await?;
        let mut out = Vec::with_capacity(parts.len());
        for (part, ids) in parts.iter().zip(ids) {
            let mark = tx.savepoint().await?;
            // The record first: a copy of a message accepted meanwhile (sent again while the
            // first was on its way) stops here, and on PostgreSQL a concurrent copy waits on
            // the record's key until this one commits.
            let done = match tx.hl7_record(&part.record).await {
                Ok(true) => self.apply(&mut tx, &part.requests, ids).await.map(Some),
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            };
            match done {
                Ok(Some(changes)) => {
                    tx.release(mark).await?;
                    out.push(Ok(Some(changes)));
                }
                // Another writer's change: the whole group is tried again.
                Err(e) if is_write_conflict(&e) => return Err(e),
                other => {
                    tx.rollback_to(mark).await?;
                    out.push(other);
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}
