//! The state file: what `serve` keeps across restarts, in `<state.dir>/vpcflowd.state`.
//!
//! The file holds the 16-byte magic `VPCFLOWD-STATE\n\0`, the format version (u32,
//! little-endian), the payload length (u64) and its CRC-32 (u32), then the payload: MessagePack
//! (rmp-serde) of [`StateFile`]. It is written to a temporary file, synced and renamed over the
//! old one, so a crash leaves either the old or the new file, never half of one. A file with a
//! wrong magic, an unknown version, a bad length or checksum, or an undecodable payload is
//! refused with an error saying which.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::source::kinesis::{Position, ShardKey};
use crate::window::engine::EngineCheckpoint;

pub const FILE_NAME: &str = "vpcflowd.state";
const MAGIC: &[u8; 16] = b"VPCFLOWD-STATE\n\0";
/// The format this build writes and reads. Version 4 stores sources with one flow inline,
/// tables as entry lists, per-direction counters, each interface's learned addresses, each
/// source's TCP flag counts and distinct-destination sketches, and each interface's source
/// history. Files of any other version are refused (`--discard-bad-state` sets one aside).
pub const VERSION: u32 = 4;
const HEADER: usize = 16 + 4 + 8 + 4;

/// Everything kept across a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    /// When it was written (Unix milliseconds).
    pub written_at_ms: u64,
    /// The engine's open windows, watermark and bookkeeping.
    pub engine: EngineCheckpoint,
    /// Applied Firehose request ids with the time they were applied (oldest first).
    pub dedup: Vec<(u64, String)>,
    /// Kinesis shard positions: every record up to them is in `engine`.
    #[serde(default)]
    pub kinesis: KinesisCheckpoint,
    /// The ingest counts of what the state holds, which a restart continues.
    #[serde(default)]
    pub ingest: IngestCounts,
}

/// The counts of [`super::pipeline::IngestStats`] a restart continues from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestCounts {
    pub records: u64,
    pub rejected: u64,
    pub bytes: u64,
}

/// The Kinesis part of a state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KinesisCheckpoint {
    /// With lease tables, this is the generation committed with these positions (see
    /// `source::kinesis::lease`); otherwise it is 0.
    pub generation: u64,
    pub positions: Vec<(ShardKey, Position)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}: not a vpcflowd state file")]
    NotAStateFile(PathBuf),
    #[error(
        "{path}: state file version {found} is not supported (this build reads version {VERSION})"
    )]
    UnknownVersion { path: PathBuf, found: u32 },
    #[error("{path}: corrupt state file: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Encodes a state file.
pub fn encode(state: &StateFile) -> Result<Vec<u8>, String> {
    let payload = rmp_serde::to_vec(state).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes a state file read from `path` (for messages).
pub fn decode(bytes: &[u8], path: &Path) -> Result<StateFile, StateError> {
    let corrupt = |detail: String| StateError::Corrupt { path: path.to_owned(), detail };
    if bytes.len() < 16 || &bytes[..16] != MAGIC {
        return Err(StateError::NotAStateFile(path.to_owned()));
    }
    if bytes.len() < HEADER {
        return Err(corrupt(format!("{} bytes, shorter than the header", bytes.len())));
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let version = u32_at(16);
    if version != VERSION {
        return Err(StateError::UnknownVersion { path: path.to_owned(), found: version });
    }
    let len = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(corrupt(format!("payload is {} bytes, the header says {len}", payload.len())));
    }
    if crc32fast::hash(payload) != u32_at(28) {
        return Err(corrupt("checksum mismatch".into()));
    }
    rmp_serde::from_slice(payload).map_err(|e| corrupt(e.to_string()))
}

/// Writes the state file atomically (temporary file, fsync, rename, fsync of the directory).
pub fn write(dir: &Path, state: &StateFile) -> Result<(), StateError> {
    let path = path_in(dir);
    let io_err = |source| StateError::Io { path: path.clone(), source };
    let bytes =
        encode(state).map_err(|detail| StateError::Corrupt { path: path.clone(), detail })?;
    write_atomically(dir, FILE_NAME, &bytes).map_err(io_err)
}

/// Replaces `dir/name` with `bytes` atomically (temporary file, fsync, rename, fsync of the
/// directory): a crash leaves the old file or the new one, never part of one.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    // Best effort, as the rename already took effect: a failure leaves it less durable.
    let _ = sync_dir(dir);
    Ok(())
}

/// Makes the entries of `dir` (a rename, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The prepared state file of a lease-mode checkpoint (see [`write_next`]).
pub fn next_path_in(dir: &Path) -> PathBuf {
    dir.join(format!("{FILE_NAME}.next"))
}

/// Lease mode, step 1: writes the new state file beside the current one, durably, without
/// making it current. Step 2 commits the leases; step 3 is [`promote_next`]. A crash between
/// them leaves both files, and [`resolve_next`] decides at the next start.
pub fn write_next(dir: &Path, state: &StateFile) -> Result<(), StateError> {
    let path = next_path_in(dir);
    let io_err = |source| StateError::Io { path: path.clone(), source };
    let bytes =
        encode(state).map_err(|detail| StateError::Corrupt { path: path.clone(), detail })?;
    let mut f = File::create(&path).map_err(io_err)?;
    f.write_all(&bytes).map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    Ok(())
}

/// Lease mode, step 3: the committed file becomes current.
pub fn promote_next(dir: &Path) -> Result<(), StateError> {
    let path = path_in(dir);
    fs::rename(next_path_in(dir), &path).map_err(|source| StateError::Io { path, source })?;
    // Best effort, as the rename already took effect: a failure leaves it less durable.
    let _ = sync_dir(dir);
    Ok(())
}

/// Drops a prepared file whose commit failed.
pub fn discard_next(dir: &Path) {
    let _ = fs::remove_file(next_path_in(dir));
}

/// At start in lease mode: a prepared file left by a crash is made current if its generation
/// is the one the lease table committed, else dropped. Returns what was done, for the log.
pub fn resolve_next(
    dir: &Path,
    committed: Option<u64>,
) -> Result<Option<&'static str>, StateError> {
    let path = next_path_in(dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    let generation = decode(&bytes, &path).ok().map(|f| f.kinesis.generation);
    if generation.is_some() && generation == committed {
        promote_next(dir)?;
        Ok(Some("promoted the prepared state file: its leases were committed"))
    } else {
        discard_next(dir);
        Ok(Some("dropped the prepared state file: its leases were not committed"))
    }
}

/// Reads the state file; returns `None` when there is none.
pub fn read(dir: &Path) -> Result<Option<StateFile>, StateError> {
    let path = path_in(dir);
    match fs::read(&path) {
        Ok(bytes) => decode(&bytes, &path).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io { path, source }),
    }
}

/// Moves a state file that cannot be used out of the way; returns where it went.
pub fn set_aside(dir: &Path, now_ms: u64) -> io::Result<PathBuf> {
    let to = dir.join(format!("{FILE_NAME}.bad-{now_ms}"));
    fs::rename(path_in(dir), &to)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{Engine, EngineConfig, WindowSpec};
    use std::time::Duration;

    fn sample() -> StateFile {
        let spec = WindowSpec::new(Duration::from_secs(300), Duration::from_secs(60)).unwrap();
        let mut c = EngineConfig::new(spec);
        c.shards = 1;
        let (mut router, _rx, join) = Engine::start(c).into_parts();
        let engine = router.checkpoint();
        router.stop();
        join.join();
        StateFile {
            written_at_ms: 1,
            engine,
            dedup: vec![(5, "id".into())],
            kinesis: KinesisCheckpoint {
                generation: 3,
                positions: vec![(ShardKey::new("s", "shardId-1"), Position::After("42".into()))],
            },
            ingest: IngestCounts { records: 7, rejected: 2, bytes: 900 },
        }
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let p = Path::new("x");
        let bytes = encode(&sample()).unwrap();
        let back = decode(&bytes, p).unwrap();
        assert_eq!(back.dedup, [(5, "id".to_string())]);
        assert_eq!(back.kinesis.generation, 3);
        assert_eq!(back.kinesis.positions[0].1, Position::After("42".into()));
        assert_eq!(back.ingest, IngestCounts { records: 7, rejected: 2, bytes: 900 });
        assert!(matches!(decode(b"garbage", p), Err(StateError::NotAStateFile(_))));
        // Both a newer format and the previous one (whose tables this build cannot read) are
        // refused.
        for other in [VERSION + 1, VERSION - 1] {
            let mut v = bytes.clone();
            v[16..20].copy_from_slice(&other.to_le_bytes());
            assert!(
                matches!(decode(&v, p), Err(StateError::UnknownVersion { found, .. }) if found == other)
            );
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(decode(&flipped, p), Err(StateError::Corrupt { .. })));
        assert!(matches!(decode(&bytes[..bytes.len() - 1], p), Err(StateError::Corrupt { .. })));
    }
}
