//! The parse pool: each thread reads chunks into [`ParsedRecords`], plain lines through the
//! shortcut and every other line through a [`FileReader`], with the same result as a reader
//! reading the whole chunk.

use std::sync::Mutex;
use std::sync::mpsc::Receiver;

use super::{Job, MISSING_INTERFACE, ParsedChunk};
use crate::decode::{LayoutSet, LineContext, Rejects, parse_plain_line};
use crate::record::{ParsedRecords, RouteInput};
use crate::source::file::{FileReader, ReadStats, may_be_header};

/// Runs a parse thread, which parses chunks until the splitter stops.
pub(super) fn parse_jobs(jobs: &Mutex<Receiver<Job>>, layouts: LayoutSet, max_record_bytes: usize) {
    let mut reader = FileReader::new(layouts);
    loop {
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(Job { input, text, started_under, reply }) = job else { return };
        let chunk = parse_chunk(&mut reader, input, text, started_under, max_record_bytes);
        // The consumer may have gone; then the chunk is simply not wanted.
        let _ = reply.send(chunk);
    }
}

/// Parses one chunk under `started_under` (an earlier header's layouts) or the configured ones.
/// Past `max_record_bytes` of parsed lines its records are dropped and it is marked oversized.
pub(super) fn parse_chunk(
    reader: &mut FileReader,
    input: usize,
    text: Vec<u8>,
    started_under: Option<LayoutSet>,
    max_record_bytes: usize,
) -> ParsedChunk {
    parse_chunk_as(reader, input, text, started_under, max_record_bytes, PlainLines::Shortcut)
}

/// How a chunk's plain default-format lines are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PlainLines {
    /// The lines are read straight from their fields by [`parse_plain_line`], as every caller but
    /// the tests reads them.
    Shortcut,
    /// The lines go through the [`FileReader`] with every other line (the tests compare the two
    /// ways).
    #[cfg_attr(not(test), expect(dead_code, reason = "the tests read chunks both ways"))]
    Reader,
}

/// Parses a chunk as [`parse_chunk`] does, reading plain lines as `plain` says.
///
/// With the shortcut, a line that [`parse_plain_line`] reads under the layouts in effect
/// (nearly every line of a flow log) is kept straight from its fields. Every other line (a
/// header, a wrapped or malformed line, a record without an interface) goes, with the lines
/// next to it that the shortcut did not take, through the [`FileReader`], which reads them as
/// it reads a whole chunk: a result that depends on the shortcut would be a bug (the
/// shortcut only reads lines whose general reading it knows: see [`parse_plain_line`]).
pub(super) fn parse_chunk_as(
    reader: &mut FileReader,
    input: usize,
    text: Vec<u8>,
    started_under: Option<LayoutSet>,
    max_record_bytes: usize,
    plain: PlainLines,
) -> ParsedChunk {
    reader.stats = ReadStats::default();
    reader.rejects = Rejects::new();
    let mut kept = KeptRecords {
        // A line is about 110 bytes.
        records: ParsedRecords::with_capacity(text.len() / 96 + 1),
        bytes: 0,
        max_bytes: max_record_bytes,
        oversized: false,
    };
    let mut messages = Vec::new();
    let mut layouts = started_under.clone();
    // These are the lines the shortcut did not take, waiting for the reader: their bytes, and
    // the number of the chunk's lines before them.
    let mut waiting = 0..0;
    let mut lines_before_waiting = 0u64;
    // Whether a waiting line may be a header that changes the layouts in effect.
    let mut header_waiting = false;
    let mut lines = 0u64;
    let mut at = 0;
    while at < text.len() {
        let end = memchr::memchr(b'\n', &text[at..]).map_or(text.len(), |i| at + i);
        let next = (end + 1).min(text.len());
        let line = &text[at..end];
        lines += 1;
        // Only a line starting as a version can take the shortcut, under layouts that read the
        // default format first; a header among the waiting lines may change the layouts it is
        // read under, so those go first (otherwise they keep waiting, so that lines of another
        // format go to the reader a chunk at a time, not one by one).
        let versionlike =
            plain == PlainLines::Shortcut && matches!(line.first(), Some(b'0'..=b'9' | b'-'));
        let reads_plain = in_effect(&layouts, reader).first().is_default_format();
        if versionlike && !waiting.is_empty() && (reads_plain || header_waiting) {
            let waited = &text[waiting.clone()];
            layouts = read_waiting(
                reader,
                waited,
                layouts,
                lines_before_waiting,
                &mut kept,
                &mut messages,
            );
            waiting = at..at;
            lines_before_waiting = lines - 1;
            header_waiting = false;
        }
        // `parse_plain_line` declines a line under layouts that do not read the default format
        // first (such as those a header among the waiting lines just set).
        let plain = versionlike
            .then(|| parse_plain_line(in_effect(&layouts, reader), line))
            .flatten()
            .map(|p| (RouteInput::of_default(&p.record, &LineContext::default()), p.text));
        match plain {
            Some((record, line_text)) if record.interface.is_some() => {
                reader.stats.lines += 1;
                reader.stats.records += 1;
                kept.keep(&record, line_text.len());
                waiting = next..next;
                lines_before_waiting = lines;
            }
            _ => {
                waiting.end = next;
                header_waiting |= may_be_header(line);
            }
        }
        at = next;
    }
    if !waiting.is_empty() {
        layouts = read_waiting(
            reader,
            &text[waiting],
            layouts,
            lines_before_waiting,
            &mut kept,
            &mut messages,
        );
    }
    ParsedChunk {
        input,
        records: kept.records,
        stats: reader.stats,
        rejects: std::mem::take(&mut reader.rejects),
        messages,
        started_under,
        ended_under: layouts,
        oversized: kept.oversized,
        text,
    }
}

/// The layouts a chunk's next line is read under: an earlier header's, else the configured.
fn in_effect<'l>(header_layouts: &'l Option<LayoutSet>, reader: &'l FileReader) -> &'l LayoutSet {
    header_layouts.as_ref().unwrap_or(reader.layouts())
}

/// Reads lines of a chunk through the reader (`lines_before` is the number of the chunk's lines
/// before them, for rejections' line numbers) and returns the layouts in effect after them.
fn read_waiting(
    reader: &mut FileReader,
    text: &[u8],
    layouts: Option<LayoutSet>,
    lines_before: u64,
    kept: &mut KeptRecords,
    messages: &mut Vec<(u64, String)>,
) -> Option<LayoutSet> {
    reader
        .read_part(
            &mut &text[..],
            layouts,
            |parsed, ctx| {
                let input = RouteInput::of(&parsed.record, ctx);
                if input.interface.is_none() {
                    return Err(MISSING_INTERFACE);
                }
                kept.keep(&input, parsed.text.len());
                Ok(())
            },
            |r| messages.push((r.line + lines_before, r.detail.to_string())),
        )
        // Reading a slice cannot fail.
        .unwrap_or(None)
}

/// A chunk's records as they are parsed, until they come to more than `max_bytes` of lines:
/// then none are kept, and the chunk is left to the router (the rest of it is still read, for
/// its layouts and line count).
struct KeptRecords {
    records: ParsedRecords,
    bytes: usize,
    max_bytes: usize,
    oversized: bool,
}

impl KeptRecords {
    #[inline]
    fn keep(&mut self, input: &RouteInput<'_>, line_bytes: usize) {
        self.bytes = self.bytes.saturating_add(line_bytes);
        if self.bytes > self.max_bytes && !self.oversized {
            self.oversized = true;
            self.records = ParsedRecords::default();
        }
        if !self.oversized {
            self.records.push(input);
        }
    }
}
