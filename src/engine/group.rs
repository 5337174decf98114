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

/// One transaction of a group, and the HL7 message it records when it commits.
pub struct Part {
    pub requests: Vec<Request>,
    pub record: Received,
}

impl Engine {
    /// Commits each part whose transaction succeeds, in one database transaction; the results
    /// come back in the parts' order. A conflict retries the whole group.
    pub async fn transaction_group(&self, parts: &[Part]) -> Vec<Result<Vec<Result<Outcome>>>> {
        let checked: Vec<Result<()>> = parts.iter().map(|p| check_requests(&p.requests)).collect();
        // Server-assigned ids for creates, fixed across retries.
        let ids: Vec<Vec<String>> =
            parts.iter().map(|p| p.requests.iter().map(|_| super::new_id()).collect()).collect();
        let written = match self.retry(|| self.try_group(parts, &ids, &checked)).await {
            Ok(w) => w,
            Err(e) => {
                // Nothing committed: every part that got this far fails with the group.
                let why = e.to_string();
                return checked
                    .into_iter()
                    .map(|c| c.and(Err(Error::Internal(format!("not stored: {why}")))))
                    .collect();
            }
        };
        let mut out = Vec::with_capacity(parts.len());
        for ((part, check), w) in parts.iter().zip(checked).zip(written) {
            out.push(match (check, w) {
                (Err(e), _) | (Ok(()), Err(e)) => Err(e),
                (Ok(()), Ok(changes)) => Ok(self.finish(&part.requests, changes).await),
            });
        }
        out
    }

    async fn try_group(
        &self,
        parts: &[Part],
        ids: &[Vec<String>],
        checked: &[Result<()>],
    ) -> Result<Vec<Result<Vec<Option<Change>>>>> {
        let mut tx = self.store.begin().await?;
        let mut out = Vec::with_capacity(parts.len());
        for ((part, ids), check) in parts.iter().zip(ids).zip(checked) {
            if check.is_err() {
                out.push(Err(Error::Internal("not checked".into())));
                continue;
            }
            let mark = tx.savepoint().await?;
            // The record first: a copy of a message accepted meanwhile (sent again while the
            // first was on its way) stops here, and on PostgreSQL a concurrent copy waits on
            // the record's key until this one commits.
            let recorded = match tx.hl7_record(&part.record).await {
                Ok(r) => r,
                Err(e) if is_write_conflict(&e) => return Err(e),
                Err(e) => {
                    tx.rollback_to(mark).await?;
                    out.push(Err(e));
                    continue;
                }
            };
            if !recorded {
                tx.rollback_to(mark).await?;
                out.push(Err(Error::Conflict(crate::store::hl7::ALREADY_ACCEPTED.into())));
                continue;
            }
            match self.apply(&mut tx, &part.requests, ids).await {
                Ok(changes) => {
                    tx.release(mark).await?;
                    out.push(Ok(changes));
                }
                // Another writer's change: the whole group is tried again.
                Err(e) if is_write_conflict(&e) => return Err(e),
                Err(e) => {
                    tx.rollback_to(mark).await?;
                    out.push(Err(e));
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}
