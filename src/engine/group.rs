//! Group commit: several independent transactions in one database transaction, each inside
//! its own savepoint. Every commit costs a flush of the pages it changed, and successive
//! transactions change mostly the same pages (the ends of the same indexes), so one commit
//! for a group writes far less than one per transaction. A part that fails is rolled back to
//! its savepoint and answered alone; the others commit.

use super::Engine;
use super::draft::Drafts;
use super::transaction::{Change, Outcome, Request, check_requests};
use crate::error::{Error, Result};
use crate::store::hl7::Received;
use crate::store::{Durable, is_write_conflict};

/// One transaction of a group, and the HL7 message it records when it commits. Its requests
/// are checked when it is made, by the sender's task: the group's writer, which every part
/// waits for, only writes.
pub struct Part {
    requests: Vec<Request>,
    record: Received,
    drafts: Option<Drafts>,
}

impl Part {
    /// A part whose requests pass the checks a transaction makes before the database.
    pub fn new(requests: Vec<Request>, record: Received) -> Result<Part> {
        check_requests(&requests)?;
        Ok(Part { requests, record, drafts: None })
    }

    /// The part with its index rows extracted, and the queries of its conditions planned,
    /// here on the sender's task instead of on the writer (`draft.rs`).
    pub fn drafted(self, engine: &Engine) -> Part {
        let drafts = Drafts::make(&engine.registry, &self.requests)
            .with_conditions(&self.requests, |t, q| engine.condition_filter(t, q));
        Part { drafts: Some(drafts), ..self }
    }
}

/// One part's changes, `None` when its message was recorded already, or its own error.
type PartResult = Result<Option<Vec<Option<Change>>>>;

/// What became of one part of a group.
pub enum Committed {
    /// Its writes, committed with its record.
    Written(Vec<Result<Outcome>>),
    /// Its message had been accepted already (a copy sent again): nothing was written.
    AlreadyRecorded,
}

/// A group committed but perhaps not yet durable; [`GroupCommit::into_parts`] gives each part
/// its share, and [`Engine::finish_part`] waits for the disk and gives the part its result.
pub struct GroupCommit(Result<(Vec<PartResult>, Durable)>);

/// One part's share of a committed group.
pub struct PartCommit(std::result::Result<(PartResult, Durable), String>);

impl GroupCommit {
    /// Runs `f` with the `n` parts' shares once the commit has had its sync — on the sync
    /// thread, or at once when nothing was committed or the commit was durable on return.
    pub fn when_synced(self, n: usize, f: impl FnOnce(Vec<PartCommit>) + Send + 'static) {
        match &self.0 {
            Ok((_, durable)) => durable.clone().then(move || f(self.into_parts(n))),
            Err(_) => f(self.into_parts(n)),
        }
    }

    /// Each of the group's `n` parts' shares, in the parts' order.
    pub fn into_parts(self, n: usize) -> Vec<PartCommit> {
        match self.0 {
            Ok((written, durable)) => {
                written.into_iter().map(|w| PartCommit(Ok((w, durable.clone())))).collect()
            }
            // Nothing committed: every part in the group fails with it.
            Err(e) => {
                let why = format!("not stored: {e}");
                (0..n).map(|_| PartCommit(Err(why.clone()))).collect()
            }
        }
    }
}

impl Engine {
    /// Commits each part whose transaction succeeds, in one database transaction; the results
    /// come back in the parts' order, once the commit is durable. A conflict retries the whole
    /// group.
    pub async fn transaction_group(&self, parts: &[Part]) -> Vec<Result<Committed>> {
        let shares = self.commit_group(parts).await.into_parts(parts.len());
        let mut out = Vec::with_capacity(parts.len());
        for (part, share) in parts.iter().zip(shares) {
            out.push(self.finish_part(part, share).await);
        }
        out
    }

    /// The group's database work, up to its commit: the writer is free for the next group when
    /// this returns, while the disk syncs this one.
    pub async fn commit_group(&self, parts: &[Part]) -> GroupCommit {
        // Server-assigned ids for creates, fixed across retries.
        let ids: Vec<Vec<String>> =
            parts.iter().map(|p| p.requests.iter().map(|_| super::new_id()).collect()).collect();
        GroupCommit(self.retry(|| self.try_group(parts, &ids)).await)
    }

    /// A part's result, once its group's commit is durable, on the part's own task (the HL7
    /// writer hands the share over only once the sync has ended, so the wait is then over).
    pub async fn finish_part(&self, part: &Part, share: PartCommit) -> Result<Committed> {
        let (written, durable) = share.0.map_err(Error::Internal)?;
        durable.wait().await?;
        match written? {
            Some(changes) => Ok(Committed::Written(self.finish(&part.requests, changes).await)),
            None => Ok(Committed::AlreadyRecorded),
        }
    }

    /// Each part's changes, `None` when its message was recorded already, or its own error.
    ///
    /// Parts run first without savepoints: a savepoint makes SQLite copy every page a part
    /// touches first into a statement journal, which cost about a fifth of a part's writing.
    /// Parts rarely fail once checked, and when one does the group runs again, each part in
    /// its own savepoint.
    async fn try_group(&self, parts: &[Part], ids: &[Vec<String>]) -> Result<(Vec<PartResult>, Durable)> {
        match self.try_group_with(parts, ids, false).await? {
            Some(out) => Ok(out),
            None => self
                .try_group_with(parts, ids, true)
                .await?
                .ok_or_else(|| Error::Internal("a group in savepoints gave up".into())),
        }
    }

    /// The group in one transaction, each part in its own savepoint when `savepoints` (one
    /// that fails is undone alone); without them, `None` (nothing committed) as soon as a part
    /// fails.
    async fn try_group_with(
        &self,
        parts: &[Part],
        ids: &[Vec<String>],
        savepoints: bool,
    ) -> Result<Option<(Vec<PartResult>, Durable)>> {
        let mut tx = self.store.begin().await?;
        let mut out = Vec::with_capacity(parts.len());
        for (part, ids) in parts.iter().zip(ids) {
            let mark = if savepoints { Some(tx.savepoint().await?) } else { None };
            // The record first: a copy of a message accepted meanwhile (sent again while the
            // first was on its way) stops here, and on PostgreSQL a concurrent copy waits on
            // the record's key until this one commits.
            let done = match tx.hl7_record(&part.record).await {
                Ok(true) => self.apply(&mut tx, &part.requests, ids, part.drafts.as_ref()).await.map(Some),
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            };
            match (done, mark) {
                // Another writer's change: the whole group is tried again.
                (Err(e), _) if is_write_conflict(&e) => return Err(e),
                // Dropping the transaction rolls it back.
                (Err(_), None) => return Ok(None),
                (Err(e), Some(mark)) => {
                    tx.rollback_to(mark).await?;
                    out.push(Err(e));
                }
                (Ok(changes), Some(mark)) => {
                    tx.release(mark).await?;
                    out.push(Ok(changes));
                }
                (Ok(changes), None) => out.push(Ok(changes)),
            }
        }
        let durable = tx.commit_before_sync().await?;
        Ok(Some((out, durable)))
    }
}
