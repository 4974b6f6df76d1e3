//! The snapshot store kept across restarts: a journal of the batches the store took in, and
//! now and then a base (the whole store), in the state directory.
//!
//! The journal is split by state generation: `vpcflowd.windows.<g>` holds the batches closed
//! after state file `g` was cut. The snapshot consumer appends each batch it stores (and
//! syncs it: a batch comes once per slide). A checkpoint cuts the journal where it cuts the
//! engine: the router waits in the checkpoint, so no batch closes meanwhile, and
//! [`History::cut`] waits until every batch the closer emitted is appended, then starts the
//! next generation's journal (and, when the journal has outgrown the last base, writes the
//! store as base `vpcflowd.windows.base.<g+1>`). A start from state file `G` reads the newest
//! base at or before `G` and the journals from it to before `G`; the journals from `G` on hold
//! windows that closed after the state file, which replaying the write-ahead log closes again,
//! so they are dropped. A torn or corrupt tail is cut at its last whole entry (CRC-32).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::store::SnapshotStore;
use crate::window::Snapshot;

const JOURNAL: &str = "vpcflowd.windows.";
const BASE: &str = "vpcflowd.windows.base.";
/// A journal this much larger than the last base (or than 1 MiB) is folded into a new base.
const MIN_FOLD_BYTES: u64 = 1 << 20;
/// Bytes of an entry's header: its length and its CRC-32.
const HEADER: usize = 8;

/// What the status shows of the journal.
#[derive(Debug, Default)]
pub struct HistoryStats {
    /// Batches appended to the journal by this process.
    pub batches: AtomicU64,
    /// Snapshots read back from the base and the journal at start.
    pub restored: AtomicU64,
    /// Bytes cut from a torn or corrupt journal tail at start.
    pub cut_bytes: AtomicU64,
    /// Appends or cuts that failed (the API's history may then miss windows after a crash).
    pub failures: AtomicU64,
}

/// The journal and where it stands; see the module documentation.
#[derive(Debug)]
pub(crate) struct History {
    dir: PathBuf,
    store: Arc<SnapshotStore>,
    journal: Mutex<Journal>,
    appended: Condvar,
    pub(crate) stats: Arc<HistoryStats>,
}

#[derive(Debug)]
struct Journal {
    file: Option<File>,
    generation: u64,
    /// Batches appended in this process (the closer counts the batches it emits alike).
    appended: u64,
    since_base: u64,
    base_bytes: u64,
}

fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{JOURNAL}{generation}"))
}

fn base_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{BASE}{generation}"))
}

/// The generations of the files named `prefix<g>` in `dir`, ascending.
fn generations(dir: &Path, prefix: &str) -> Vec<u64> {
    let mut found: Vec<u64> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(prefix)?.parse().ok())
        .collect();
    found.sort_unstable();
    found
}

/// One entry: length, CRC-32 of the payload, and the batch as named MessagePack.
fn encode(batch: &[Arc<Snapshot>]) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let payload = rmp_serde::to_vec_named(batch)?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The whole entries at the start of `bytes`, and how many bytes they take.
pub fn decode(bytes: &[u8]) -> (Vec<Vec<Snapshot>>, usize) {
    let (mut batches, mut at) = (Vec::new(), 0);
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(batch) = rmp_serde::from_slice::<Vec<Snapshot>>(payload) else { break };
        batches.push(batch);
        at += HEADER + len;
    }
    (batches, at)
}

impl History {
    /// Fills `store` from what the state directory keeps for state generation `generation`
    /// and starts that generation's journal afresh.
    pub(crate) fn restore(
        dir: &Path,
        generation: u64,
        store: Arc<SnapshotStore>,
    ) -> io::Result<History> {
        let stats = Arc::new(HistoryStats::default());
        let base = generations(dir, BASE).into_iter().filter(|b| *b <= generation).max();
        let mut base_bytes = 0;
        if let Some(b) = base {
            let bytes = fs::read(base_path(dir, b))?;
            base_bytes = bytes.len() as u64;
            let (batches, used) = decode(&bytes);
            stats.cut_bytes.fetch_add((bytes.len() - used) as u64, Relaxed);
            restore_batches(&store, &stats, batches);
        }
        let from = base.unwrap_or(0);
        let mut since_base = 0;
        for g in generations(dir, JOURNAL).into_iter().filter(|g| (from..generation).contains(g)) {
            let bytes = fs::read(journal_path(dir, g))?;
            let (batches, used) = decode(&bytes);
            since_base += used as u64;
            stats.cut_bytes.fetch_add((bytes.len() - used) as u64, Relaxed);
            restore_batches(&store, &stats, batches);
        }
        // Journals from `generation` on hold windows the write-ahead log closes again.
        let file = File::create(journal_path(dir, generation))?;
        let journal = Journal { file: Some(file), generation, appended: 0, since_base, base_bytes };
        let history = History {
            dir: dir.to_path_buf(),
            store,
            journal: Mutex::new(journal),
            appended: Condvar::new(),
            stats,
        };
        history.prune(generation, |g| g > generation);
        Ok(history)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a batch the store took in, durably. A failure is counted and logged: the batch
    /// is in the store, and only a crash before the next base could lose it from the API.
    pub(crate) fn append(&self, batch: &[Arc<Snapshot>]) {
        let mut journal = self.lock();
        journal.appended += 1;
        let written = encode(batch).map_err(io::Error::other).and_then(|bytes| {
            let file = journal.file.as_mut().ok_or_else(|| io::Error::other("no journal"))?;
            file.write_all(&bytes)?;
            file.sync_data()?;
            Ok(bytes.len() as u64)
        });
        match written {
            Ok(n) => {
                journal.since_base += n;
                self.stats.batches.fetch_add(1, Relaxed);
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Relaxed);
                tracing::warn!("appending closed windows to the history journal: {e}");
            }
        }
        drop(journal);
        self.appended.notify_all();
    }

    /// At a checkpoint of generation `next`, with the router waiting: waits (at most `wait`)
    /// until the `emitted` batches the closer emitted are appended, then starts `next`'s
    /// journal, and writes a base when the journal has outgrown the last one. Call
    /// [`History::covered`] once the state file of `next` is written.
    pub(crate) fn cut(&self, emitted: u64, next: u64, wait: Duration) {
        let journal = self.lock();
        let (mut journal, timeout) = self
            .appended
            .wait_timeout_while(journal, wait, |j| j.appended < emitted)
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() {
            self.stats.failures.fetch_add(1, Relaxed);
            tracing::warn!(
                emitted,
                appended = journal.appended,
                "the history journal fell behind at a checkpoint: it is cut where it stands"
            );
        }
        if let Err(e) = self.start_generation(&mut journal, next) {
            self.stats.failures.fetch_add(1, Relaxed);
            tracing::warn!("starting the next history journal: {e}");
        }
    }

    fn start_generation(&self, journal: &mut Journal, next: u64) -> io::Result<()> {
        journal.file = None;
        if journal.since_base > journal.base_bytes.max(MIN_FOLD_BYTES) {
            let bytes = encode(&self.store.all()).map_err(io::Error::other)?;
            let name = format!("{BASE}{next}");
            super::state_file::write_atomically(&self.dir, &name, &bytes)?;
            (journal.base_bytes, journal.since_base) = (bytes.len() as u64, 0);
        }
        // A checkpoint tried again after a failure continues the journal it started.
        let path = journal_path(&self.dir, next);
        journal.file = Some(OpenOptions::new().create(true).append(true).open(path)?);
        journal.generation = next;
        super::state_file::sync_dir(&self.dir)
    }

    /// Drops what state file `generation` (now written) no longer needs: bases before the
    /// newest at or before it, and journals before that base.
    pub(crate) fn covered(&self, generation: u64) {
        let base = generations(&self.dir, BASE).into_iter().filter(|b| *b <= generation).max();
        if let Some(b) = base {
            self.prune(generation, |g| g < b);
        }
    }

    /// Removes the bases and journals whose generation `drop` selects (never the current
    /// journal).
    fn prune(&self, current: u64, drop: impl Fn(u64) -> bool) {
        for (prefix, path) in
            [(BASE, base_path as fn(&Path, u64) -> PathBuf), (JOURNAL, journal_path)]
        {
            for g in generations(&self.dir, prefix).into_iter().filter(|g| drop(*g)) {
                if prefix == JOURNAL && g == current {
                    continue;
                }
                if let Err(e) = fs::remove_file(path(&self.dir, g)) {
                    tracing::warn!("removing {}: {e}", path(&self.dir, g).display());
                }
            }
        }
    }

    /// The generation of the journal being appended to.
    #[cfg(test)]
    fn generation(&self) -> u64 {
        self.lock().generation
    }
}

/// Puts restored batches into the store, raising nothing: their findings were raised before.
fn restore_batches(store: &SnapshotStore, stats: &HistoryStats, batches: Vec<Vec<Snapshot>>) {
    for batch in batches {
        stats.restored.fetch_add(batch.len() as u64, Relaxed);
        let batch: Vec<Arc<Snapshot>> = batch
            .into_iter()
            .map(|mut s| {
                s.finding_counts = crate::window::findings::counts(&s.findings);
                Arc::new(s)
            })
            .collect();
        store.insert(batch);
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
