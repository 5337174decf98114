//! The HL7 writer. Every connection (and `POST /hl7v2`) hands its mapped message to one task,
//! which commits whatever is waiting as one group (`Engine::transaction_group`): with many
//! senders, one database commit serves many messages, and each message still gets its own
//! answer, after the commit. A group waits only for messages already on their way (received
//! and being mapped on another connection), for at most [`FILL_WAIT`]: a lone sender is
//! committed at once, and eight busy senders share a commit instead of splitting into two
//! cohorts that alternate (each commit waits for the disk, whatever its size).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::engine::{Committed, Engine, Part};
use crate::error::{Error, Result};

/// Most messages committed together.
const GROUP_MAX: usize = 64;
/// Messages waiting for the writer before senders wait too.
const QUEUE: usize = 1024;
/// Longest a group waits for messages on their way.
const FILL_WAIT: Duration = Duration::from_millis(2);

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
    arriving: Arc<Arriving>,
}

/// Messages received and not yet handed to the writer (or given up).
#[derive(Default)]
struct Arriving {
    count: AtomicUsize,
    changed: Notify,
}

/// One message on its way to the writer; counted until it is queued or dropped.
pub struct OnItsWay(Arc<Arriving>);

impl Drop for OnItsWay {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

/// What [`run`] reads.
pub struct Inbox(mpsc::Receiver<Job>, Arc<Arriving>);

impl Ingest {
    pub fn new(authorities: super::datatypes::Authorities, max_bytes: usize) -> (Ingest, Inbox) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let arriving = Arc::new(Arriving::default());
        (
            Ingest {
                queue,
                authorities: std::sync::Arc::new(authorities),
                max_bytes,
                arriving: arriving.clone(),
            },
            Inbox(rx, arriving),
        )
    }

    /// Counts a message just received, until it is committed or given up.
    pub fn on_its_way(&self) -> OnItsWay {
        self.arriving.count.fetch_add(1, Ordering::AcqRel);
        OnItsWay(self.arriving.clone())
    }

    /// Commits one message's writes and its record.
    pub async fn commit(&self, part: Part, way: OnItsWay) -> Commit {
        let (reply, answer) = oneshot::channel();
        let queued = self.queue.send(Job { part, reply }).await;
        drop(way);
        if queued.is_err() {
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
pub async fn run(engine: &Engine, Inbox(rx, arriving): Inbox, stop: watch::Receiver<bool>) {
    let rx = tokio::sync::Mutex::new(rx);
    let writer = || writer(engine, &rx, &arriving, stop.clone());
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
    arriving: &Arriving,
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
        let jobs = gather(first, &mut inbox, if stopping { None } else { Some(arriving) }).await;
        drop(inbox);
        commit_group(engine, jobs).await;
    }
}

/// The first job, whatever else is waiting, and the messages on their way (for at most
/// [`FILL_WAIT`]), up to a group's size.
async fn gather(first: Job, rx: &mut mpsc::Receiver<Job>, arriving: Option<&Arriving>) -> Vec<Job> {
    let mut jobs = vec![first];
    let deadline = tokio::time::Instant::now() + FILL_WAIT;
    while jobs.len() < GROUP_MAX {
        if let Ok(j) = rx.try_recv() {
            jobs.push(j);
            continue;
        }
        let Some(arriving) = arriving else { break };
        // Registered before the count is read, so a change in between still wakes us.
        let changed = arriving.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if arriving.count.load(Ordering::Acquire) == 0 {
            break;
        }
        tokio::select! {
            j = rx.recv() => match j {
                Some(j) => jobs.push(j),
                None => break,
            },
            _ = &mut changed => {}
            _ = tokio::time::sleep_until(deadline) => break,
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
