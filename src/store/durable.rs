//! Group durability for SQLite commits.
//!
//! The write connection's COMMIT appends its pages to the WAL and returns without waiting for
//! the disk (`walbuf.rs`: the commit's sync only writes out its gathered frames), so the next
//! transaction can begin at once.
//! Durability comes from here: one thread syncs the WAL file, and every commit is answered
//! only after a sync that began after it. One sync covers every commit made before it began,
//! so a sync's wait for the disk overlaps the next transactions' work instead of holding the
//! write lock through it — while `synchronous = FULL` makes each COMMIT wait for its own.
//!
//! What this keeps: an answered write survives a power loss, as with FULL. What it gives up: a
//! reader may see a write (and base a later one on it) a millisecond or two before it is on
//! disk. After a power loss such a write is gone together with everything written after it —
//! the WAL is replayed in order up to its last intact commit — so the database stays
//! consistent; only a reader that looked in that window saw something that then vanished.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::error::{Error, Result};

/// Syncs one database's WAL file for the commits announced to it.
pub struct WalSync {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    wal: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
    synced: watch::Sender<Synced>,
}

/// Commits are numbered in the order they reached the WAL.
#[derive(Default)]
struct State {
    committed: u64,
    /// Every commit up to this one has had its sync (or a sync failed).
    settled: u64,
    /// What to run once a commit's sync has ended, by commit number, in order.
    then: Vec<(u64, Then)>,
    stop: bool,
}

type Then = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Synced {
    /// Every commit up to this one is on disk.
    upto: u64,
    /// A sync failed: nothing committed after `upto` can be promised durable, and per the
    /// kernel's fsync semantics a later success would not prove otherwise.
    broken: Option<Arc<str>>,
}

impl WalSync {
    /// Starts the sync thread for the WAL file at `wal`.
    pub fn start(wal: PathBuf) -> Result<WalSync> {
        let shared = Arc::new(Shared {
            wal,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            synced: watch::Sender::new(Synced::default()),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hearth-wal-sync".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::Internal(format!("cannot start the WAL sync thread: {e}")))?;
        Ok(WalSync { shared, thread: Some(thread) })
    }

    /// Announces a commit; called after COMMIT and before the write lock is released, so that
    /// numbers follow the WAL's order. Returns the commit's number.
    pub fn committed(&self) -> u64 {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.committed += 1;
        self.shared.wake.notify_one();
        state.committed
    }

    /// Runs `f` once commit `n`'s sync has ended (at once if it has), on the sync thread: a
    /// task woken from there goes to the runtime's shared queue, which any of its threads
    /// takes from.
    fn then(&self, n: u64, f: Then) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if n <= state.settled {
            drop(state);
            f();
        } else {
            state.then.push((n, f));
        }
    }

    /// Waits until commit `n` is on disk.
    pub async fn durable(&self, n: u64) -> Result<()> {
        let mut rx = self.shared.synced.subscribe();
        let synced = rx
            .wait_for(|s| s.upto >= n || s.broken.is_some())
            .await
            .map_err(|_| Error::Internal("the WAL sync thread is gone".into()))?;
        match &synced.broken {
            Some(why) if synced.upto < n => Err(Error::Internal(format!(
                "the write was committed but could not be made durable: syncing the WAL failed ({why})"
            ))),
            _ => Ok(()),
        }
    }
}

impl Shared {
    fn run(&self) {
        let mut done = 0;
        loop {
            let target = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                while state.committed == done && !state.stop {
                    state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                if state.committed == done {
                    return;
                }
                state.committed
            };
            match self.sync() {
                Ok(()) => self.synced.send_modify(|s| s.upto = target),
                Err(e) => {
                    tracing::error!(
                        "syncing {} failed: {e}; writes are no longer durable",
                        self.wal.display()
                    );
                    self.synced.send_modify(|s| s.broken = Some(e.to_string().into()));
                }
            }
            done = target;
            let due: Vec<Then> = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.settled = done;
                let later = state.then.iter().position(|(n, _)| *n > done).unwrap_or(state.then.len());
                state.then.drain(..later).map(|(_, f)| f).collect()
            };
            due.into_iter().for_each(|f| f());
        }
    }

    /// Opened for each sync rather than kept: a WAL deleted and created again (when every
    /// connection closed) must not leave an old file's handle behind. A missing WAL was
    /// checkpointed into the database, and synced, when its last connection closed.
    fn sync(&self) -> std::io::Result<()> {
        match std::fs::File::open(&self.wal) {
            Ok(file) => file.sync_data(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for WalSync {
    /// Syncs what was committed, then ends the thread.
    fn drop(&mut self) {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A committed transaction's promise of durability.
#[derive(Clone)]
pub struct Durable(Option<(Arc<WalSync>, u64)>);

impl Durable {
    /// Durable once its commit returned (PostgreSQL flushes its WAL before COMMIT returns).
    pub fn at_commit() -> Durable {
        Durable(None)
    }

    pub(super) fn after(sync: Arc<WalSync>, n: u64) -> Durable {
        Durable(Some((sync, n)))
    }

    /// Runs `f` once the commit's sync has ended (whether it succeeded is for [`Self::wait`]
    /// to say): at once for a commit durable when it returned.
    pub fn then(&self, f: impl FnOnce() + Send + 'static) {
        match &self.0 {
            Some((sync, n)) => sync.then(*n, Box::new(f)),
            None => f(),
        }
    }

    /// Waits until the commit is on disk.
    pub async fn wait(self) -> Result<()> {
        match self.0 {
            Some((sync, n)) => sync.durable(n).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_each_commit_after_a_sync_that_covers_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let wal = dir.join("t.db-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let sync = Arc::new(WalSync::start(wal.clone()).unwrap());
        let (a, b) = (sync.committed(), sync.committed());
        assert_eq!((a, b), (1, 2));
        Durable::after(sync.clone(), b).wait().await.unwrap();
        Durable::after(sync.clone(), a).wait().await.unwrap();
        // A WAL that is gone was checkpointed: nothing is left to sync.
        std::fs::remove_file(&wal).unwrap();
        let c = sync.committed();
        Durable::after(sync.clone(), c).wait().await.unwrap();
        // A sync that fails (here: a path through a file cannot be opened) is reported to the
        // commit it should have covered, and to every later one.
        std::fs::write(dir.join("file"), b"").unwrap();
        let broken = Arc::new(WalSync::start(dir.join("file").join("t.db-wal")).unwrap());
        let e = broken.committed();
        let err = Durable::after(broken.clone(), e).wait().await.unwrap_err();
        assert!(err.to_string().contains("could not be made durable"), "{err}");
        let f = broken.committed();
        assert!(Durable::after(broken.clone(), f).wait().await.is_err());
        // What waits for a commit's sync runs once it has ended, failed or not; and at once
        // for a commit whose sync already ended.
        for (sync, n) in [(&sync, sync.committed()), (&broken, broken.committed()), (&sync, a)] {
            let (tx, rx) = tokio::sync::oneshot::channel();
            Durable::after(sync.clone(), n).then(move || {
                let _ = tx.send(());
            });
            rx.await.unwrap();
        }
        drop(sync);
    }
}
