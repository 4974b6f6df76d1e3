//! The write-ahead log of accepted Firehose requests, so that a 200 survives a crash.
//!
//! Firehose never resends a request that was answered 200, so the pipeline answers only once a
//! request is durable: it appends the request's parsed records to the log of the current state
//! generation before routing them, fsyncs once for every request it holds unanswered (a group
//! commit: one fsync for as many requests as queued up during the last one), and then answers.
//! A checkpoint covers everything logged before it, so it starts the next generation's log and
//! removes the older ones. At start the log of the restored generation is routed again, request
//! ids included, so that Firehose's retries of unanswered requests still deduplicate.
//!
//! The log of generation `g` is `vpcflowd.wal.<g>` in the state directory: entries of a
//! little-endian `u32` payload length, the payload's CRC-32 and the MessagePack payload. A torn
//! or corrupt tail (a crash during an append) is detected by its length or checksum and cut at
//! the last whole entry; nothing of it is applied.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::ParsedRecords;
use crate::source::firehose::DecodedRequest;

const PREFIX: &str = "vpcflowd.wal.";
const HEADER: usize = 8;
/// An entry larger than this is not believed: it is a corrupt length.
const MAX_ENTRY: usize = 1 << 30;

/// What the log keeps of one request: what the pipeline routes, and what it needs to route it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WalEntry {
    pub request_id: String,
    /// When the request arrived (Unix milliseconds): records without a time are windowed by it.
    pub arrival_ms: u64,
    pub records: WalRecords,
}

/// A request's records: parsed on the HTTP worker, or the decoded request itself when its lines
/// were too large to hold parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WalRecords {
    Parsed(ParsedRecords),
    Raw { request: DecodedRequest, account: Option<String>, region: Option<String> },
}

/// The borrowed form of a [`WalEntry`] the pipeline appends, without copying the records.
#[derive(Debug, Serialize)]
pub(crate) struct WalEntryRef<'a> {
    pub request_id: &'a str,
    pub arrival_ms: u64,
    pub records: WalRecordsRef<'a>,
}

/// The borrowed form of [`WalRecords`]; it serializes as the owned form deserializes.
#[derive(Debug, Serialize)]
#[serde(rename = "WalRecords")]
pub(crate) enum WalRecordsRef<'a> {
    Parsed(&'a ParsedRecords),
    Raw { request: &'a DecodedRequest, account: Option<&'a str>, region: Option<&'a str> },
}

/// Why the log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("write-ahead log entry: {0}")]
    Encode(String),
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
    file: File,
    /// Bytes appended since the last fsync.
    unsynced: u64,
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
        sync_dir(dir).map_err(|source| WalError::Io { path, source })?;
        Ok(Wal { dir: dir.to_owned(), generation, file, unsynced: 0 })
    }

    fn io(&self, source: io::Error) -> WalError {
        WalError::Io { path: path_of(&self.dir, self.generation), source }
    }

    /// Appends one entry (not yet durable: see [`Wal::sync`]). Returns its size on disk.
    pub(crate) fn append(&mut self, entry: &WalEntryRef<'_>) -> Result<u64, WalError> {
        let bytes = encode(entry)?;
        self.file.write_all(&bytes).map_err(|e| self.io(e))?;
        self.unsynced += bytes.len() as u64;
        Ok(bytes.len() as u64)
    }

    /// Makes every appended entry durable; returns whether there was anything to sync.
    pub(crate) fn sync(&mut self) -> Result<bool, WalError> {
        if self.unsynced == 0 {
            return Ok(false);
        }
        self.file.sync_data().map_err(|e| self.io(e))?;
        self.unsynced = 0;
        Ok(true)
    }

    /// Starts generation `generation`'s log once its state file is current, and removes the logs
    /// that state file covers.
    pub(crate) fn rotate(&mut self, generation: u64) -> Result<(), WalError> {
        let next = Wal::open(&self.dir, generation)?;
        let old = std::mem::replace(self, next);
        drop(old.file);
        remove_other_logs(&self.dir, generation);
        Ok(())
    }
}

/// One entry as it lies on disk.
fn encode(entry: &WalEntryRef<'_>) -> Result<Vec<u8>, WalError> {
    let payload = rmp_serde::to_vec(entry).map_err(|e| WalError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The whole entries at the start of `bytes`, and the length they take; what follows them is a
/// torn or corrupt tail.
pub(crate) fn decode_entries(bytes: &[u8]) -> (Vec<WalEntry>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let len = word(at) as usize;
        let crc = word(at + 4);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len).filter(|_| len <= MAX_ENTRY)
        else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(entry) = rmp_serde::from_slice::<WalEntry>(payload) else { break };
        entries.push(entry);
        at += HEADER + len;
    }
    (entries, at)
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
        if generation.parse::<u64>().is_ok_and(|g| g != keep) {
            if generation.parse::<u64>().is_ok_and(|g| g > keep) {
                tracing::warn!(file = ?name, "removing a write-ahead log newer than the state");
            }
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
