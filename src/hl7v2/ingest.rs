//! The HL7 writer. Every connection (and `POST /hl7v2`) hands its mapped message to one task,
//! which commits whatever is waiting as one group (`Engine::transaction_group`): with many
//! senders, one database commit serves many messages, and each message still gets its own
//! answer, after the commit. Nothing waits to fill a group: a lone sender is committed at once.

use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::{Committed, Engine, Part};
use crate::error::{Error, Result};

/// Most messages committed together.
const GROUP_MAX: usize = 64;
/// Messages waiting for the writer before senders wait too.
const QUEUE: usize = 1024;

struct Job {
    part: Part,
    reply: oneshot::Sender<Result<Committed>>,
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
}

/// What [`run`] reads.
pub struct Inbox(mpsc::Receiver<Job>);

impl Ingest {
    pub fn new(authorities: super::datatypes::Authorities, max_bytes: usize) -> (Ingest, Inbox) {
        let (queue, rx) = mpsc::channel(QUEUE);
        (Ingest { queue, authorities: std::sync::Arc::new(authorities), max_bytes }, Inbox(rx))
    }

    /// Commits one message's writes and its record.
    pub async fn commit(&self, part: Part) -> Commit {
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Job { part, reply }).await.is_err() {
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
    let writer = || writer(engine, &rx, stop.clone());
    match engine.store.dialect() {
        crate::store::Dialect::Sqlite => writer().await,
        crate::store::Dialect::Postgres => {
            tokio::join!(writer(), writer(), writer(), writer());
        }
    }
}

async fn writer(
    engine: &Engine,
    rx: &tokio::sync::Mutex<mpsc::Receiver<Job>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut stopping = false;
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
        let jobs = gather(first, &mut inbox);
        drop(inbox);
        commit_group(engine, jobs).await;
    }
}

/// The first job and whatever else is waiting, up to a group's size.
fn gather(first: Job, rx: &mut mpsc::Receiver<Job>) -> Vec<Job> {
    let mut jobs = vec![first];
    while jobs.len() < GROUP_MAX {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
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
