//! The write-ahead log of accepted Firehose requests, so that a 200 survives a crash.
//!
//! Firehose never resends a request that was answered 200, so a request is answered only once
//! it is durable. The HTTP worker encodes the request's body as it arrived into a log entry; the
//! pipeline appends the entry to the log of the current state generation before routing the
//! records; the [`Syncer`] thread fsyncs the log and answers every request appended before that
//! fsync (a group commit). A checkpoint covers everything logged before it, so it starts the
//! next generation's log and removes the older ones. At start the log of the restored
//! generation is routed again, request ids included, so that Firehose's retries of unanswered
//! requests still deduplicate.
//!
//! The log of generation `g` is `vpcflowd.wal.<g>` in the state directory, a sequence of entries
//! ([`encode_entry`]), each with its length and CRC-32. A torn or corrupt tail (a crash during
//! an append) is detected by its length or checksum and cut at the last whole entry; nothing of
//! it is applied.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::pipeline::{IngestStats, JobOutcome};
use super::state_file;
use crate::source::firehose::DecodedRequest;

const PREFIX: &str = "vpcflowd.wal.";
const HEADER: usize = 8;
/// An entry larger than this is not believed: it is a corrupt length.
const MAX_ENTRY: usize = 1 << 30;

/// What the log keeps of one request: its id, when it arrived, and its body as Firehose sent
/// it, from which the pipeline decodes, parses and routes its records again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalEntry {
    pub(crate) request_id: String,
    /// When the request arrived (Unix milliseconds): records without a time are windowed by it.
    pub(crate) arrival_ms: u64,
    /// The body as sent, and its `Content-Encoding`.
    pub(crate) body: Vec<u8>,
    pub(crate) encoding: Option<String>,
    /// The request's common attributes, for records that lack them.
    pub(crate) account: Option<String>,
    pub(crate) region: Option<String>,
}

/// What [`encode_entry`] logs of a request, borrowed from the HTTP worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SentRequest<'a> {
    pub(crate) body: &'a [u8],
    pub(crate) encoding: Option<&'a str>,
    pub(crate) account: Option<&'a str>,
    pub(crate) region: Option<&'a str>,
}

impl WalEntry {
    /// The request's records, decoded from its body as when it arrived.
    pub(crate) fn decode(&self) -> Result<DecodedRequest, crate::source::firehose::RequestError> {
        let mut headers = axum::http::HeaderMap::new();
        if let Some(e) = self.encoding.as_deref().and_then(|e| e.parse().ok()) {
            headers.insert(axum::http::header::CONTENT_ENCODING, e);
        }
        // The body was accepted under the limit in force then; only a sanity bound applies.
        let body = crate::source::firehose::decode_body(&headers, &self.body, 1 << 40)?;
        crate::source::firehose::decode_request(&body)
    }
}

/// Why the log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A request reached the pipeline without the entry its HTTP worker encodes (a bug).
    #[error("write-ahead log: request {0} came without its log entry")]
    Unlogged(String),
}

/// The path of generation `generation`'s log in `dir`.
pub(crate) fn path_of(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{generation}"))
}

/// The open log of the current generation.
#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    generation: u64,
    /// Shared with the [`Syncer`], which syncs it off the pipeline thread.
    file: Arc<File>,
}

impl Wal {
    /// Opens (or creates) generation `generation`'s log for appending.
    pub(crate) fn open(dir: &Path, generation: u64) -> Result<Wal, WalError> {
        let path = path_of(dir, generation);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| WalError::Io { path: path.clone(), source })?;
        // The file's name must be durable too, or a crash could lose the whole log.
        state_file::sync_dir(dir).map_err(|source| WalError::Io { path, source })?;
        Ok(Wal { dir: dir.to_owned(), generation, file: Arc::new(file) })
    }

    fn io(&self, source: io::Error) -> WalError {
        WalError::Io { path: path_of(&self.dir, self.generation), source }
    }

    /// Appends an entry encoded by [`encode_entry`] (durable once a [`Syncer`] synced it).
    pub(crate) fn append_encoded(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        (&*self.file).write_all(bytes).map_err(|e| self.io(e))
    }

    /// The log's file, for a [`Syncer`] to sync what was appended so far.
    pub(crate) fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Starts generation `generation`'s log once its state file is current, and removes the logs
    /// that state file covers.
    pub(crate) fn rotate(&mut self, generation: u64) -> Result<(), WalError> {
        let next = Wal::open(&self.dir, generation)?;
        drop(std::mem::replace(self, next));
        remove_other_logs(&self.dir, generation);
        Ok(())
    }
}

/// A request's entry as it lies on disk, encoded on the HTTP worker that took it in: a
/// little-endian `u32` payload length, the payload's CRC-32, then the payload (the request id,
/// arrival, encoding, account and region as length-prefixed fields, then the body).
pub(crate) fn encode_entry(request_id: &str, arrival_ms: u64, sent: &SentRequest<'_>) -> Vec<u8> {
    let texts = [Some(request_id), sent.encoding, sent.account, sent.region];
    let text: usize = texts.iter().flatten().map(|t| t.len()).sum();
    let mut out = Vec::with_capacity(HEADER + 28 + text + sent.body.len());
    out.extend_from_slice(&[0; HEADER]);
    put_text(&mut out, Some(request_id));
    out.extend_from_slice(&arrival_ms.to_le_bytes());
    put_text(&mut out, sent.encoding);
    put_text(&mut out, sent.account);
    put_text(&mut out, sent.region);
    out.extend_from_slice(sent.body);
    let len = (out.len() - HEADER) as u32;
    let crc = crc32fast::hash(&out[HEADER..]);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..HEADER].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A length-prefixed text field; `u32::MAX` stands for none.
fn put_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(t) => {
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

/// Reads the fields of a payload in order.
struct Fields<'a> {
    payload: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.payload.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(bytes)
    }

    fn word(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn text(&mut self) -> Option<Option<String>> {
        match self.word()? {
            u32::MAX => Some(None),
            n => Some(Some(String::from_utf8(self.take(n as usize)?.to_vec()).ok()?)),
        }
    }
}

/// Reads a payload written by [`encode_entry`]; `None` if it is not one.
pub fn decode_payload(payload: &[u8]) -> Option<WalEntry> {
    let mut f = Fields { payload, at: 0 };
    let request_id = f.text()??;
    let arrival_ms = u64::from_le_bytes(f.take(8)?.try_into().ok()?);
    let encoding = f.text()?;
    let account = f.text()?;
    let region = f.text()?;
    let body = payload[f.at..].to_vec();
    Some(WalEntry { request_id, arrival_ms, body, encoding, account, region })
}

/// Requests applied and logged, waiting for a sync of the log before they are answered.
pub(crate) type Unanswered = Vec<(oneshot::Sender<JobOutcome>, JobOutcome)>;

/// A sync the pipeline hands off: the log's file and the requests its appends hold.
struct SyncJob {
    file: Arc<File>,
    unanswered: Unanswered,
}

/// The thread that syncs the log and answers the requests each sync makes durable, so that the
/// pipeline routes on during a sync, and the next sync covers everything appended meanwhile (a
/// group commit). A failed sync hands its requests back to the pipeline (see [`Syncer::failed`]),
/// which writes a checkpoint before answering them.
pub(crate) struct Syncer {
    jobs: std::sync::mpsc::Sender<SyncJob>,
    failed: std::sync::mpsc::Receiver<Unanswered>,
    thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    pub(crate) fn start(stats: Arc<IngestStats>) -> io::Result<Syncer> {
        let (jobs, queue) = std::sync::mpsc::channel::<SyncJob>();
        let (failures, failed) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("vpcflowd-wal-sync".into())
            .spawn(move || sync_loop(&queue, &failures, &stats))?;
        Ok(Syncer { jobs, failed, thread })
    }

    /// Hands `unanswered` to the syncer with the file their appends are in.
    pub(crate) fn submit(&self, file: Arc<File>, unanswered: Unanswered) {
        if let Err(e) = self.jobs.send(SyncJob { file, unanswered }) {
            // The thread is gone (it panicked): answer rather than hold the requests forever.
            for (reply, outcome) in e.0.unanswered {
                let _ = reply.send(outcome);
            }
        }
    }

    /// Requests whose sync failed, for the pipeline to make durable by a checkpoint.
    pub(crate) fn failed(&self) -> Option<Unanswered> {
        self.failed.try_recv().ok()
    }

    /// Answers everything submitted, then stops.
    pub(crate) fn finish(self) -> Vec<Unanswered> {
        drop(self.jobs);
        let _ = self.thread.join();
        self.failed.try_iter().collect()
    }
}

fn sync_loop(
    queue: &std::sync::mpsc::Receiver<SyncJob>,
    failures: &std::sync::mpsc::Sender<Unanswered>,
    stats: &IngestStats,
) {
    while let Ok(first) = queue.recv() {
        // Everything queued behind the first job was appended before this sync starts.
        let mut jobs = vec![first];
        jobs.extend(queue.try_iter());
        let started = std::time::Instant::now();
        let mut synced: Vec<Arc<File>> = Vec::new();
        let mut error = None;
        for job in &jobs {
            if synced.iter().any(|f| Arc::ptr_eq(f, &job.file)) {
                continue;
            }
            if let Err(e) = job.file.sync_data() {
                error = Some(e);
            }
            synced.push(job.file.clone());
        }
        stats.wal_syncs.fetch_add(1, Ordering::Relaxed);
        let micros = started.elapsed().as_micros() as u64;
        stats.wal_sync_micros.fetch_add(micros, Ordering::Relaxed);
        let unanswered = jobs.into_iter().flat_map(|j| j.unanswered);
        match error {
            None => {
                for (reply, outcome) in unanswered {
                    let _ = reply.send(outcome);
                }
            }
            Some(e) => {
                stats.wal_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("syncing the write-ahead log: {e}; writing a checkpoint instead");
                let _ = failures.send(unanswered.collect());
            }
        }
    }
}

/// The whole entries at the start of `bytes`, and the length they take; what follows them is a
/// torn or corrupt tail.
pub fn decode_entries(bytes: &[u8]) -> (Vec<WalEntry>, usize) {
    let mut entries = Vec::new();
    let mut f = Fields { payload: bytes, at: 0 };
    loop {
        let whole = f.at;
        let entry = (|| {
            let (len, crc) = (f.word()? as usize, f.word()?);
            let payload = f.take(len).filter(|_| len <= MAX_ENTRY)?;
            (crc32fast::hash(payload) == crc).then(|| decode_payload(payload)).flatten()
        })();
        match entry {
            Some(entry) => entries.push(entry),
            None => return (entries, whole),
        }
    }
}

/// What a start found in the log of the restored generation.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub entries: Vec<WalEntry>,
    /// Bytes of a torn or corrupt tail, cut from the log.
    pub cut_bytes: u64,
}

/// Reads generation `generation`'s log, cuts a torn tail off it, and removes the logs of other
/// generations (older ones are covered by the state file; newer ones cannot be applied without
/// the state they follow, which was set aside).
pub(crate) fn recover(dir: &Path, generation: u64) -> Result<Recovered, WalError> {
    let path = path_of(dir, generation);
    let io = |source| WalError::Io { path: path.clone(), source };
    remove_other_logs(dir, generation);
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(io)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Recovered::default()),
        Err(e) => return Err(io(e)),
    };
    let (entries, whole) = decode_entries(&bytes);
    let cut_bytes = (bytes.len() - whole) as u64;
    if cut_bytes > 0 {
        tracing::warn!(
            path = %path.display(),
            cut_bytes,
            "the write-ahead log ends in a torn or corrupt entry (a crash during an append); \
             it is cut at the last whole entry, whose request was never answered"
        );
        let f = OpenOptions::new().write(true).open(&path).map_err(io)?;
        f.set_len(whole as u64).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    Ok(Recovered { entries, cut_bytes })
}

/// Removes every log but generation `keep`'s (best effort: a leftover is removed next time).
fn remove_other_logs(dir: &Path, keep: u64) {
    let Ok(listing) = std::fs::read_dir(dir) else { return };
    for entry in listing.flatten() {
        let name = entry.file_name();
        let Some(generation) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Ok(generation) = generation.parse::<u64>() else { continue };
        if generation > keep {
            tracing::warn!(file = ?name, "removing a write-ahead log newer than the state");
        }
        if generation != keep {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
