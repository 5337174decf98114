//! The HL7 writer. Every connection (and `POST /hl7v2`) hands its mapped message to one task,
//! which commits whatever is waiting as one group (`Engine::transaction_group`): with many
//! senders, one database commit serves many messages, and each message still gets its own
//! answer, after the commit.
//!
//! A group waits, for at most [`FILL_WAIT`], for the connections that sent in the last
//! [`RECENT`] and have nothing in it yet. Each commit waits for the disk whatever its size, so
//! eight busy connections should share one; without the wait they split into two cohorts of
//! four that take turns (measured: exactly 4.0 messages per group with 8 connections). A lone
//! sender, or senders gone quiet, are committed at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::engine::{Committed, Engine, Part};
use crate::error::{Error, Result};

/// Most messages committed together.
const GROUP_MAX: usize = 64;
/// Messages waiting for the writer before senders wait too.
const QUEUE: usize = 1024;
/// Longest a group waits for recent senders.
const FILL_WAIT: Duration = Duration::from_millis(2);
/// A connection that sent within this is expected to send again.
const RECENT: Duration = Duration::from_millis(50);

struct Job {
    part: Part,
    sender: Sender,
    reply: oneshot::Sender<Result<Committed>>,
}

/// Who handed a message to the writer: an MLLP connection (`Some`, expected to send again),
/// or a one-off (an HTTP request, a replay), which no group waits for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Sender(Option<u64>);

impl Sender {
    pub const ONCE: Sender = Sender(None);
}

/// What became of a message handed to the writer.
pub enum Commit {
    /// Its writes and its record are durable.
    Stored,
    /// A copy of it was accepted meanwhile: nothing was written.
    AlreadyAccepted,
    Failed(Error),
    /// The server is stopping and took nothing: the sender gets no ACK and sends it again.
    Stopping,
}

/// The writer's inbox.
#[derive(Clone)]
pub struct Ingest {
    queue: mpsc::Sender<Job>,
    /// How assigning authorities become identifier systems (configuration).
    pub authorities: std::sync::Arc<super::datatypes::Authorities>,
    /// The largest message taken (MLLP frame or HTTP body).
    pub max_bytes: usize,
    senders: Arc<AtomicU64>,
}

/// What [`run`] reads.
pub struct Inbox(mpsc::Receiver<Job>);

impl Ingest {
    pub fn new(authorities: super::datatypes::Authorities, max_bytes: usize) -> (Ingest, Inbox) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let ingest = Ingest {
            queue,
            authorities: std::sync::Arc::new(authorities),
            max_bytes,
            senders: Arc::new(AtomicU64::new(0)),
        };
        (ingest, Inbox(rx))
    }

    /// A new MLLP connection's identity.
    pub fn connection(&self) -> Sender {
        Sender(Some(self.senders.fetch_add(1, Ordering::Relaxed)))
    }

    /// Commits one message's writes and its record.
    pub async fn commit(&self, part: Part, sender: Sender) -> Commit {
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Job { part, sender, reply }).await.is_err() {
            return Commit::Stopping;
        }
        match answer.await {
            Ok(Ok(Committed::Written(_))) => Commit::Stored,
            Ok(Ok(Committed::AlreadyRecorded)) => Commit::AlreadyAccepted,
            Ok(Err(e)) => Commit::Failed(e),
            Err(_) => Commit::Stopping,
        }
    }
}

/// Commits groups until `stop`, then what is still waiting. SQLite has one writer, so one
/// group at a time; PostgreSQL commits several groups at once (its own WAL flushes many
/// transactions together).
pub async fn run(engine: &Engine, Inbox(rx): Inbox, stop: watch::Receiver<bool>) {
    let rx = tokio::sync::Mutex::new(rx);
    match engine.store.dialect() {
        crate::store::Dialect::Sqlite => writer(engine, &rx, true, stop.clone()).await,
        // Several writers share the senders, so none can tell whom to wait for: no filling.
        crate::store::Dialect::Postgres => {
            let writer = || writer(engine, &rx, false, stop.clone());
            tokio::join!(writer(), writer(), writer(), writer());
        }
    }
}

async fn writer(
    engine: &Engine,
    rx: &tokio::sync::Mutex<mpsc::Receiver<Job>>,
    fill: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut stopping = false;
    // When each sender last had a message committed by this writer.
    let mut recent: HashMap<Sender, Instant> = HashMap::new();
    loop {
        let mut inbox = rx.lock().await;
        let first = if stopping {
            // What is still queued is committed before the writer ends.
            inbox.close();
            inbox.recv().await
        } else {
            tokio::select! {
                j = inbox.recv() => j,
                _ = stop.changed() => {
                    stopping = true;
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        let now = Instant::now();
        recent.retain(|_, at| now.duration_since(*at) < RECENT);
        let expected: Vec<Sender> =
            if stopping || !fill { Vec::new() } else { recent.keys().copied().collect() };
        let jobs = gather(first, &mut inbox, &expected).await;
        drop(inbox);
        let senders: Vec<Sender> = jobs.iter().map(|j| j.sender).filter(|s| s.0.is_some()).collect();
        commit_group(engine, jobs).await;
        // Stamped after the commit: a slow disk must not make busy senders look idle.
        let done = Instant::now();
        recent.extend(senders.into_iter().map(|s| (s, done)));
    }
}

/// The first job, whatever else is waiting, and then, for at most [`FILL_WAIT`], what comes
/// until every `expected` sender has a message in the group; up to a group's size.
async fn gather(first: Job, rx: &mut mpsc::Receiver<Job>, expected: &[Sender]) -> Vec<Job> {
    let deadline = Instant::now() + FILL_WAIT;
    let mut missing: Vec<Sender> = expected.iter().copied().filter(|s| *s != first.sender).collect();
    let mut jobs = vec![first];
    while jobs.len() < GROUP_MAX {
        let next = match rx.try_recv() {
            Ok(j) => Some(j),
            Err(_) if missing.is_empty() => None,
            Err(_) => tokio::select! {
                j = rx.recv() => j,
                _ = tokio::time::sleep_until(deadline) => None,
            },
        };
        let Some(j) = next else { break };
        missing.retain(|s| *s != j.sender);
        jobs.push(j);
    }
    jobs
}

async fn commit_group(engine: &Engine, jobs: Vec<Job>) {
    let (parts, replies): (Vec<Part>, Vec<_>) = jobs.into_iter().map(|j| (j.part, j.reply)).unzip();
    let results = engine.transaction_group(&parts).await;
    for (reply, r) in replies.into_iter().zip(results) {
        // A sender that went away gets no answer; what it sent is stored all the same.
        let _ = reply.send(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(sender: Sender) -> Job {
        let record = crate::store::hl7::Received {
            sender: "T^T".into(),
            control_id: "1".into(),
            message_type: "ADT^A08".into(),
            status: "AA",
            ack: String::new(),
            raw: String::new(),
            received: 0,
        };
        let part = Part::new(Vec::new(), record).unwrap();
        Job { part, sender, reply: oneshot::channel().0 }
    }

    #[tokio::test]
    async fn gathers_what_waits_and_the_expected_senders() {
        let (a, b, c) = (Sender(Some(1)), Sender(Some(2)), Sender(Some(3)));
        let (tx, mut rx) = mpsc::channel(8);
        // Nothing expected: what is queued, no more.
        assert!(tx.send(job(b)).await.is_ok());
        assert_eq!(gather(job(a), &mut rx, &[]).await.len(), 2);
        // An expected sender that arrives later joins the group.
        let late = tx.clone();
        tokio::spawn(async move { late.send(job(b)).await.is_ok() });
        let group = gather(job(a), &mut rx, &[a, b]).await;
        assert_eq!(group.iter().map(|j| j.sender).collect::<Vec<_>>(), vec![a, b]);
        // One that never comes costs at most FILL_WAIT, and the group goes on without it.
        let group = gather(job(a), &mut rx, &[a, c]).await;
        assert_eq!(group.len(), 1);
    }
}
