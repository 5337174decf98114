//! The HL7 writer. Every connection (and `POST /hl7v2`) hands its mapped message to one task,
//! which commits whatever is waiting as one group (`Engine::commit_group`): with many senders,
//! one database commit serves many messages, and each message still gets its own answer, once
//! the commit is durable.
//!
//! The writer does not wait for the disk: it goes on with the next group, and the WAL sync
//! thread hands each message its share of the committed group once it is on disk (waking the
//! senders from outside the runtime). So the busy connections are
//! split into two cohorts that take turns — one is written while the other's commit is
//! synced, answered, and its next messages parsed. A group waits, for at most [`FILL_WAIT`],
//! for the connections of its cohort (answered in the last [`RECENT`], nothing in flight),
//! up to half of the busy connections. A lone sender, or senders gone quiet, are committed at
//! once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::AsEngine;
use crate::engine::{Committed, Engine, Part, PartCommit};
use crate::error::Error;

/// Most messages committed together.
const GROUP_MAX: usize = 64;
/// Messages waiting for the writer before senders wait too.
const QUEUE: usize = 1024;
/// Longest a group waits for recent senders.
const FILL_WAIT: Duration = Duration::from_millis(2);
/// A connection answered within this is expected to send again.
const RECENT: Duration = Duration::from_millis(50);
/// Groups the busy connections are split into (see [`Senders::plan`]).
const COHORTS: usize = 2;

struct Job {
    part: Part,
    sender: Sender,
    reply: oneshot::Sender<(Part, PartCommit)>,
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
    next_sender: Arc<AtomicU64>,
    senders: Arc<Mutex<Senders>>,
}

/// What [`run`] reads.
pub struct Inbox(mpsc::Receiver<Job>, Arc<Mutex<Senders>>);

impl Ingest {
    pub fn new(authorities: super::datatypes::Authorities, max_bytes: usize) -> (Ingest, Inbox) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let senders = Arc::new(Mutex::new(Senders::default()));
        let ingest = Ingest {
            queue,
            authorities: std::sync::Arc::new(authorities),
            max_bytes,
            next_sender: Arc::new(AtomicU64::new(0)),
            senders: senders.clone(),
        };
        (ingest, Inbox(rx, senders))
    }

    /// A new MLLP connection's identity.
    pub fn connection(&self) -> Sender {
        Sender(Some(self.next_sender.fetch_add(1, Ordering::Relaxed)))
    }

    /// Commits one message's writes and its record.
    pub async fn commit(&self, engine: &Engine, part: Part, sender: Sender) -> Commit {
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Job { part, sender, reply }).await.is_err() {
            return Commit::Stopping;
        }
        let Ok((part, share)) = answer.await else { return Commit::Stopping };
        let mut answering = Answering { senders: &self.senders, sender, answered: false };
        let result = engine.finish_part(&part, share).await;
        answering.answered = true;
        match result {
            Ok(Committed::Written(_)) => Commit::Stored,
            Ok(Committed::AlreadyRecorded) => Commit::AlreadyAccepted,
            Err(e) => Commit::Failed(e),
        }
    }
}

/// A sender whose message is committed and whose answer is being awaited: it leaves the
/// writer's in-flight set when it is answered — or when it stops waiting (its connection
/// closed), so that no stale entry outlives it.
struct Answering<'a> {
    senders: &'a Mutex<Senders>,
    sender: Sender,
    answered: bool,
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        if self.sender.0.is_none() {
            return;
        }
        let mut known = lock(self.senders);
        known.in_flight.remove(&self.sender);
        if self.answered {
            known.recent.insert(self.sender, Instant::now());
        }
    }
}

/// Commits groups until `stop`, then what is still waiting. SQLite has one writer, so one
/// group at a time; PostgreSQL commits several groups at once (its own WAL flushes many
/// transactions together).
pub async fn run(holder: Arc<dyn AsEngine>, Inbox(rx, senders): Inbox, stop: watch::Receiver<bool>) {
    let rx = tokio::sync::Mutex::new(rx);
    match holder.engine().store.dialect() {
        crate::store::Dialect::Sqlite => writer(&holder, &rx, &senders, true, stop.clone()).await,
        // Several writers share the senders, so none can tell whom to wait for: no filling.
        crate::store::Dialect::Postgres => {
            let writer = || writer(&holder, &rx, &senders, false, stop.clone());
            tokio::join!(writer(), writer(), writer(), writer());
        }
    }
}

/// What the writer knows of the MLLP connections.
#[derive(Default)]
pub struct Senders {
    /// When each was last answered.
    recent: HashMap<Sender, Instant>,
    /// Those whose message is committed and not answered yet (its commit is being synced).
    in_flight: HashSet<Sender>,
}

async fn writer(
    holder: &Arc<dyn AsEngine>,
    rx: &tokio::sync::Mutex<mpsc::Receiver<Job>>,
    senders: &Arc<Mutex<Senders>>,
    fill: bool,
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
        let plan = if stopping || !fill { Plan::ANY } else { lock(senders).plan() };
        let jobs = gather(first, &mut inbox, &plan).await;
        drop(inbox);
        let n = jobs.len();
        let mut parts = Vec::with_capacity(n);
        let mut replies = Vec::with_capacity(n);
        let mut group: Vec<Sender> = Vec::new();
        for j in jobs {
            parts.push(j.part);
            replies.push(j.reply);
            group.extend(Some(j.sender).filter(|s| s.0.is_some()));
        }
        lock(senders).in_flight.extend(group.iter().copied());
        // Without the runtime's cooperative yields: every statement of a transaction spends
        // budget, and a group of a few messages (~50 statements each) ran out of it midway and
        // went to the back of the queue, behind the senders' parsing and mapping, while every
        // sender waited for it. A group is bounded (GROUP_MAX), and the other runtime threads
        // take over what waits on this one.
        let commit = tokio::task::unconstrained(holder.engine().commit_group(&parts)).await;
        // Each sender gets its share once the commit is on disk, from the sync thread: a task
        // woken from there goes to the runtime's shared queue. Woken from here, the last one
        // sat in this thread's LIFO slot, which the other thread cannot steal from, through
        // the whole next group.
        commit.when_synced(n, move |shares| {
            for ((part, reply), share) in parts.into_iter().zip(replies).zip(shares) {
                // A sender that went away gets no answer; what it sent is stored all the same.
                let _ = reply.send((part, share));
            }
        });
    }
}

fn lock(senders: &Mutex<Senders>) -> std::sync::MutexGuard<'_, Senders> {
    senders.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a group is gathered.
struct Plan {
    /// Senders worth waiting for: answered recently and nothing in flight.
    expected: Vec<Sender>,
    /// The most messages the group takes.
    limit: usize,
}

impl Plan {
    /// What is waiting, waiting for no one.
    const ANY: Plan = Plan { expected: Vec::new(), limit: GROUP_MAX };
}

impl Senders {
    /// The busy senders are split into [`COHORTS`] groups that take turns: while one group's
    /// commit is synced, the writer writes the next one's.
    fn plan(&mut self) -> Plan {
        let now = Instant::now();
        self.recent.retain(|_, at| now.duration_since(*at) < RECENT);
        let busy = self.recent.len() + self.in_flight.iter().filter(|s| !self.recent.contains_key(s)).count();
        let expected: Vec<Sender> =
            self.recent.keys().filter(|s| !self.in_flight.contains(s)).copied().collect();
        let limit = if busy < COHORTS { GROUP_MAX } else { busy.div_ceil(COHORTS).min(GROUP_MAX) };
        Plan { expected, limit }
    }
}

/// The first job, whatever else is waiting, and then, for at most [`FILL_WAIT`], what comes
/// until every `expected` sender has a message in the group; up to the plan's limit.
async fn gather(first: Job, rx: &mut mpsc::Receiver<Job>, plan: &Plan) -> Vec<Job> {
    let deadline = Instant::now() + FILL_WAIT;
    let mut missing: Vec<Sender> = plan.expected.iter().copied().filter(|s| *s != first.sender).collect();
    let mut jobs = vec![first];
    while jobs.len() < plan.limit {
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

    #[test]
    fn a_sender_leaves_the_in_flight_set_however_it_stops_waiting() {
        let senders = Mutex::new(Senders::default());
        let (a, b) = (Sender(Some(1)), Sender(Some(2)));
        lock(&senders).in_flight.extend([a, b]);
        drop(Answering { senders: &senders, sender: a, answered: true });
        // Gone before its answer (its connection's task ended): not expected to send again.
        drop(Answering { senders: &senders, sender: b, answered: false });
        let known = lock(&senders);
        assert!(known.in_flight.is_empty());
        assert_eq!(known.recent.keys().copied().collect::<Vec<_>>(), vec![a]);
    }

    #[test]
    fn splits_busy_senders_into_cohorts() {
        let mut known = Senders::default();
        let all: Vec<Sender> = (0..8).map(|i| Sender(Some(i))).collect();
        let now = Instant::now();
        known.recent.extend(all.iter().map(|s| (*s, now)));
        let plan = known.plan();
        assert_eq!((plan.expected.len(), plan.limit), (8, 4));
        // Half of them in flight: the group waits for the other half only.
        known.in_flight.extend(&all[..4]);
        let mut expected = known.plan().expected;
        expected.sort_by_key(|s| s.0);
        assert_eq!(expected, all[4..]);
        // A lone sender is not held back.
        let mut lone = Senders::default();
        lone.recent.insert(all[0], now);
        assert_eq!(lone.plan().limit, GROUP_MAX);
    }

    #[tokio::test]
    async fn gathers_what_waits_and_the_expected_senders() {
        let (a, b, c) = (Sender(Some(1)), Sender(Some(2)), Sender(Some(3)));
        let (tx, mut rx) = mpsc::channel(8);
        // Nothing expected: what is queued, no more.
        assert!(tx.send(job(b)).await.is_ok());
        assert_eq!(gather(job(a), &mut rx, &Plan::ANY).await.len(), 2);
        // An expected sender that arrives later joins the group.
        let late = tx.clone();
        tokio::spawn(async move { late.send(job(b)).await.is_ok() });
        let group = gather(job(a), &mut rx, &Plan { expected: vec![a, b], limit: 8 }).await;
        assert_eq!(group.iter().map(|j| j.sender).collect::<Vec<_>>(), vec![a, b]);
        // One that never comes costs at most FILL_WAIT, and the group goes on without it.
        let group = gather(job(a), &mut rx, &Plan { expected: vec![a, c], limit: 8 }).await;
        assert_eq!(group.len(), 1);
        // No more than the limit, whatever waits.
        for _ in 0..3 {
            assert!(tx.send(job(b)).await.is_ok());
        }
        assert_eq!(gather(job(a), &mut rx, &Plan { expected: vec![], limit: 2 }).await.len(), 2);
    }
}
