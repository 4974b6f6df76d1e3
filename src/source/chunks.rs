//! Inputs read in chunks of whole lines, each chunk decoded and parsed on a pool of threads,
//! and handed back in input order, so that replay's router (the engine's one sequencer) only
//! routes. Without this, one thread read, decoded, parsed and routed every line, and replay
//! ran at the speed of that thread while the other core waited on it.
//!
//! ```text
//!   splitter ──chunks──► parse thread ×N ──parsed chunk──┐
//!      └──── one receipt per chunk, in input order ─────┴──► ParsedInputs::next_chunk (router)
//! ```
//!
//! - The **splitter** reads each input (gzip or plain, through [`Input::open`]) into chunks
//!   that end at a line's end, and queues one receipt per chunk, in order, on a bounded channel.
//!   Read-ahead is bounded: `in_flight` receipts queued, each chunk about `chunk_bytes` of text
//!   plus, once parsed, its records (about the size of its lines).
//! - A **parse thread** reads a chunk with its own [`FileReader`], the reader `parse` and
//!   `replay` have always used, into [`PreparedRecords`] with the chunk's counts, rejections
//!   and messages.
//! - [`ParsedInputs::next_chunk`] waits for each receipt in turn, so chunks come back in input
//!   order and line numbers are counted from the input's start.
//!
//! **Header lines.** An S3 header line sets the layout for the rest of its input, so the
//! layouts a chunk is read under depend on every earlier chunk. The splitter reads header lines
//! as the parser does (a line starting with a lowercase letter that names only fields), so each
//! chunk starts under the right layouts. [`ParsedInputs::next_chunk`] still checks each chunk's
//! layouts against those the chunks before it ended with, and parses a chunk again if they ever
//! differ: a divergence would cost time, never correctness.
//!
//! **Lines that expand.** A line may be a gzip'd CloudWatch payload that decodes to megabytes.
//! A chunk whose records come to more than `max_record_bytes` is not held parsed: it comes back
//! as an [`UnparsedChunk`], which the router reads a record at a time, as before.
//!
//! **Live input.** Standard input may be a pipe fed as events happen (and `--time processing`
//! stamps records when they are routed), so a live source sends its whole lines whenever a read
//! has drained what was available, rather than waiting for a full chunk.

use std::io::{self, BufRead};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::file::{FileReader, Input, ReadStats, Refusal, Rejection, header_layout, may_be_header};
use crate::decode::{
    Layout, LayoutSet, LineContext, ParsedLine, RejectReason, Rejects, parse_plain_line,
};
use crate::window::event::RouteInput;
use crate::window::prepared::PreparedRecords;

/// Opens one input on the splitter's thread.
pub type Opener = Box<dyn FnOnce() -> io::Result<Box<dyn BufRead>> + Send>;

/// One input: its name in messages, and how to open it.
pub struct Source {
    pub name: String,
    pub open: Opener,
    /// Fed as events happen (standard input): whole lines are sent as soon as a read has
    /// drained what was available.
    pub live: bool,
}

impl Source {
    /// A file or standard input (live).
    pub fn input(input: Input) -> Source {
        let live = input == Input::Stdin;
        Source { name: input.name().into_owned(), open: Box::new(move || input.open()), live }
    }
}

/// How the inputs are cut up and parsed.
#[derive(Debug, Clone, Copy)]
pub struct ChunkConfig {
    /// Bytes per chunk (a chunk grows past this only to finish a longer line).
    pub chunk_bytes: usize,
    /// Parse threads.
    pub threads: usize,
    /// Chunks read ahead of the router, at most.
    pub in_flight: usize,
    /// Bytes of parsed lines a chunk may hold; past this it is left to the router.
    pub max_record_bytes: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        // A chunk of 512 KiB is about 4,500 lines: long enough that handing it over costs
        // nothing per line, short enough that the read-ahead stays a few megabytes. Plain and
        // `{"message"}` lines decode to no more than their own size; only gzip'd lines grow.
        let chunk_bytes = 512 * 1024;
        ChunkConfig {
            chunk_bytes,
            threads,
            in_flight: 2 * threads + 2,
            max_record_bytes: 4 * chunk_bytes,
        }
    }
}

/// A record refused for naming no interface: the router would refuse it, so it is counted as a
/// rejection when it parses.
pub const MISSING_INTERFACE: Refusal = Refusal {
    reason: RejectReason::MissingInterface,
    detail: "the record names no interface (no interface-id, resource-id or tgw-attachment-id)",
};

/// A chunk of one input, parsed.
pub struct ParsedChunk {
    /// The input's index in the sources.
    pub input: usize,
    /// Its records, in order, ready to route.
    pub records: PreparedRecords,
    /// Its counts.
    pub stats: ReadStats,
    /// Its rejections by reason, with samples.
    pub rejects: Rejects,
    /// Each rejection's input line number (from the input's start) and message.
    pub messages: Vec<(u64, String)>,
    /// The layouts it was parsed under and those in effect at its end (set by headers).
    started_under: Option<LayoutSet>,
    ended_under: Option<LayoutSet>,
    /// Its records came to more than `max_record_bytes` and were not kept.
    oversized: bool,
    /// Its text, kept in case it must be parsed again or by the router.
    text: Vec<u8>,
}

/// A chunk too large to hold parsed: read it a record at a time with [`UnparsedChunk::read`].
pub struct UnparsedChunk {
    /// The input's index in the sources.
    pub input: usize,
    text: Vec<u8>,
    layouts: Option<LayoutSet>,
    /// Lines of the input before this chunk.
    first_line: u64,
}

impl UnparsedChunk {
    /// Reads the chunk with `reader` (whose counts and rejections it adds to), as
    /// [`FileReader::read`] does; rejections' line numbers count from the input's start.
    pub fn read(
        &self,
        reader: &mut FileReader,
        on_record: impl FnMut(&ParsedLine<'_, '_>, &LineContext<'_>) -> Result<(), Refusal>,
        mut on_reject: impl FnMut(&Rejection<'_>),
    ) {
        let at = self.first_line;
        // Reading a slice cannot fail.
        let _ = reader.read_part(&mut &self.text[..], self.layouts.clone(), on_record, |r| {
            on_reject(&Rejection { line: r.line + at, ..*r })
        });
    }
}

/// What [`ParsedInputs::next_chunk`] hands back.
pub enum Delivery {
    Chunk(Box<ParsedChunk>),
    Unparsed(Box<UnparsedChunk>),
    /// Reading input `input` failed; what was read before the failure has been delivered.
    Failed {
        input: usize,
        error: io::Error,
    },
}

enum Receipt {
    Chunk(Receiver<ParsedChunk>),
    Failed {
        input: usize,
        error: io::Error,
    },
    /// Every input has been cut: a receipt channel that closes without it means the splitter
    /// stopped early (it panicked), and the output would be silently short.
    End,
}

struct Job {
    input: usize,
    text: Vec<u8>,
    started_under: Option<LayoutSet>,
    reply: SyncSender<ParsedChunk>,
}

/// Parsed chunks of the inputs, in input order. See the module documentation.
pub struct ParsedInputs {
    names: Vec<String>,
    receipts: Receiver<Receipt>,
    /// Parses again a chunk whose layouts were wrong (never expected).
    reader: FileReader,
    /// The input being delivered, the lines delivered of it, and its layouts so far.
    input: usize,
    lines: u64,
    layouts: Option<LayoutSet>,
    max_record_bytes: usize,
    /// Chunks parsed again because the splitter's layouts were wrong (expected: none).
    reparsed: u64,
    threads: Vec<JoinHandle<()>>,
}

impl ParsedInputs {
    /// Starts reading `sources` under `layouts`.
    pub fn start(sources: Vec<Source>, layouts: LayoutSet, config: ChunkConfig) -> ParsedInputs {
        let names = sources.iter().map(|s| s.name.clone()).collect();
        let (receipts_tx, receipts) = sync_channel::<Receipt>(config.in_flight.max(1));
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(config.in_flight.max(1));
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let mut threads = Vec::new();
        for i in 0..config.threads.max(1) {
            let (jobs, layouts) = (jobs_rx.clone(), layouts.clone());
            let max = config.max_record_bytes;
            let thread = std::thread::Builder::new()
                .name(format!("vpcflowd-parse-{i}"))
                .spawn(move || parse_jobs(&jobs, layouts, max))
                .expect("spawn parse thread");
            threads.push(thread);
        }
        let thread = std::thread::Builder::new()
            .name("vpcflowd-read".into())
            .spawn(move || split(sources, config.chunk_bytes, &jobs_tx, &receipts_tx))
            .expect("spawn reader thread");
        threads.push(thread);
        ParsedInputs {
            names,
            receipts,
            reader: FileReader::new(layouts),
            input: 0,
            lines: 0,
            layouts: None,
            max_record_bytes: config.max_record_bytes,
            reparsed: 0,
            threads,
        }
    }

    /// The name of input `input`, for messages.
    pub fn name(&self, input: usize) -> &str {
        self.names.get(input).map_or("<input>", String::as_str)
    }

    /// The next chunk in input order, parsed under the layouts in effect for it, its
    /// messages' line numbers counted from its input's start; `None` after the last.
    ///
    /// Panics if a reader or parse thread has panicked, rather than end the input early.
    pub fn next_chunk(&mut self) -> Option<Delivery> {
        let receipt = self.receipts.recv().expect("the reader thread stopped before the end");
        let mut chunk = match receipt {
            Receipt::End => return None,
            Receipt::Failed { input, error } => return Some(Delivery::Failed { input, error }),
            Receipt::Chunk(rx) => rx.recv().expect("a parse thread stopped"),
        };
        if chunk.input != self.input {
            (self.input, self.lines, self.layouts) = (chunk.input, 0, None);
        }
        if chunk.started_under != self.layouts {
            self.reparsed += 1;
            let text = std::mem::take(&mut chunk.text);
            let (input, layouts) = (chunk.input, self.layouts.clone());
            chunk = parse_chunk(&mut self.reader, input, text, layouts, self.max_record_bytes);
        }
        self.layouts = chunk.ended_under.take();
        let first_line = self.lines;
        self.lines += chunk.stats.lines;
        if chunk.oversized {
            let ParsedChunk { input, text, started_under: layouts, .. } = chunk;
            let unparsed = UnparsedChunk { input, text, layouts, first_line };
            return Some(Delivery::Unparsed(Box::new(unparsed)));
        }
        for (line, _) in &mut chunk.messages {
            *line += first_line;
        }
        chunk.text = Vec::new();
        Some(Delivery::Chunk(Box::new(chunk)))
    }

    /// How many chunks were parsed again because the splitter's layouts for them were wrong
    /// (none, unless the splitter and the parser disagree about a header line).
    pub fn reparsed(&self) -> u64 {
        self.reparsed
    }

    /// Waits for the threads, once [`ParsedInputs::next_chunk`] has returned `None` (or to stop
    /// early: the threads stop once their queues close, though a splitter blocked reading
    /// standard input stops only when its read returns).
    pub fn close(self) {
        let ParsedInputs { receipts, threads, .. } = self;
        drop(receipts);
        for t in threads {
            if let Err(panic) = t.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// The splitter: cuts every input into chunks of whole lines and queues them, each with the
/// layouts the header lines before it set.
fn split(
    sources: Vec<Source>,
    chunk_bytes: usize,
    jobs: &SyncSender<Job>,
    receipts: &SyncSender<Receipt>,
) {
    for (input, source) in sources.into_iter().enumerate() {
        let mut layouts: Option<LayoutSet> = None;
        let mut send = |text: Vec<u8>| {
            let started_under = layouts.clone();
            if let Some(header) = last_header(&text) {
                layouts = Some(LayoutSet::single(header));
            }
            let (reply, parsed) = sync_channel(1);
            jobs.send(Job { input, text, started_under, reply }).is_ok()
                && receipts.send(Receipt::Chunk(parsed)).is_ok()
        };
        let live = source.live;
        let read = (source.open)().and_then(|mut r| cut(&mut *r, chunk_bytes, live, &mut send));
        match read {
            Ok(true) => {}
            // The consumer has gone: nothing more to do.
            Ok(false) => return,
            Err(error) => {
                if receipts.send(Receipt::Failed { input, error }).is_err() {
                    return;
                }
            }
        }
    }
    let _ = receipts.send(Receipt::End);
}

/// The layout of the last header line in `text`, found as [`FileReader`] finds them
/// ([`header_layout`]).
fn last_header(text: &[u8]) -> Option<Layout> {
    let starts = std::iter::once(0).chain(memchr::memchr_iter(b'\n', text).map(|end| end + 1));
    // From the end; only lines that may be headers have their end looked for.
    let starts = starts.filter(|&s| may_be_header(&text[s..]));
    starts
        .filter_map(|start| {
            let line = &text[start..];
            header_layout(&line[..memchr::memchr(b'\n', line).unwrap_or(line.len())])
        })
        .next_back()
}

/// Cuts one input into chunks of about `chunk_bytes` that end at a line's end (the last may
/// end without one); a `live` input also sends its whole lines whenever a read has drained
/// what was available. Returns `Ok(false)` once `send` refuses a chunk. On a read error, the
/// whole lines read before it are sent first.
fn cut(
    input: &mut dyn BufRead,
    chunk_bytes: usize,
    live: bool,
    send: &mut impl FnMut(Vec<u8>) -> bool,
) -> io::Result<bool> {
    let chunk_bytes = chunk_bytes.max(1);
    let mut chunk = Vec::with_capacity(chunk_bytes);
    let mut target = chunk_bytes;
    // Sends the whole lines of `chunk`, keeping the partial last one.
    let send_lines = |chunk: &mut Vec<u8>, send: &mut dyn FnMut(Vec<u8>) -> bool| {
        let Some(end) = memchr::memrchr(b'\n', chunk) else { return true };
        let mut next = Vec::with_capacity(chunk_bytes.max(chunk.len() - end));
        next.extend_from_slice(&chunk[end + 1..]);
        chunk.truncate(end + 1);
        send(std::mem::replace(chunk, next))
    };
    loop {
        let buffered = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if let Some(end) = memchr::memrchr(b'\n', &chunk) {
                    chunk.truncate(end + 1);
                    if !send(chunk) {
                        return Ok(false);
                    }
                }
                return Err(e);
            }
        };
        if buffered.is_empty() {
            return Ok(chunk.is_empty() || send(chunk));
        }
        let take = buffered.len().min(target - chunk.len());
        let drained = take == buffered.len();
        chunk.extend_from_slice(&buffered[..take]);
        input.consume(take);
        if chunk.len() >= target {
            if memchr::memrchr(b'\n', &chunk).is_none() {
                // One line longer than a chunk: read on until it ends.
                target = target.saturating_mul(2);
                continue;
            }
            if !send_lines(&mut chunk, send) {
                return Ok(false);
            }
            target = chunk_bytes.max(chunk.len() + 1);
        } else if live && drained && !send_lines(&mut chunk, send) {
            // The next read may wait for input: what has arrived goes on now.
            return Ok(false);
        }
    }
}

/// A parse thread: parses chunks until the splitter stops.
fn parse_jobs(jobs: &Mutex<Receiver<Job>>, layouts: LayoutSet, max_record_bytes: usize) {
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
fn parse_chunk(
    reader: &mut FileReader,
    input: usize,
    text: Vec<u8>,
    started_under: Option<LayoutSet>,
    max_record_bytes: usize,
) -> ParsedChunk {
    parse_chunk_as(reader, input, text, started_under, max_record_bytes, true)
}

/// [`parse_chunk`], taking the plain-line shortcut or not (the tests compare the two).
///
/// With the shortcut, a line that [`parse_plain_line`] reads under the layouts in effect
/// (nearly every line of a flow log) is kept straight from its fields. Every other line (a
/// header, a wrapped or malformed line, a record without an interface) goes, with the lines
/// next to it that the shortcut did not take, through the [`FileReader`], which reads them as
/// it reads a whole chunk: a result that depends on the shortcut would be a bug (the
/// shortcut only reads lines whose general reading it knows: see [`parse_plain_line`]).
fn parse_chunk_as(
    reader: &mut FileReader,
    input: usize,
    text: Vec<u8>,
    started_under: Option<LayoutSet>,
    max_record_bytes: usize,
    shortcut: bool,
) -> ParsedChunk {
    reader.stats = ReadStats::default();
    reader.rejects = Rejects::new();
    let mut kept = KeptRecords {
        // About 110 bytes a line.
        records: PreparedRecords::with_capacity(text.len() / 96 + 1),
        bytes: 0,
        max_bytes: max_record_bytes,
        oversized: false,
    };
    let mut messages = Vec::new();
    let mut layouts = started_under.clone();
    // Lines the shortcut did not take, waiting for the reader: their bytes, and the number of
    // the chunk's lines before them.
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
        // read under, so those go first (and else they wait on, so that lines of another
        // format go to the reader a chunk at a time, not one by one).
        let versionlike = shortcut && matches!(line.first(), Some(b'0'..=b'9' | b'-'));
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

/// Reads lines of a chunk through the reader (`lines_before`: the chunk's lines before them,
/// for rejections' line numbers); returns the layouts in effect after them.
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
    records: PreparedRecords,
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
            self.records = PreparedRecords::default();
        }
        if !self.oversized {
            self.records.push(input);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str =
        "2 111111111111 eni-a 10.0.0.1 10.0.0.2 1 2 6 3 300 1700000000 1700000060 ACCEPT OK";

    fn text_source(name: &str, text: String) -> Source {
        let open: Opener = Box::new(move || Ok(Box::new(io::Cursor::new(text.into_bytes()))));
        Source { name: name.into(), open, live: false }
    }

    /// Everything delivered: (input, interface, bytes) per record, and (input, line, message)
    /// per rejection, plus summed counts.
    type Delivered = (Vec<(usize, String, Option<u64>)>, Vec<(usize, u64, String)>, ReadStats);

    fn deliver(sources: Vec<Source>, config: ChunkConfig) -> Delivered {
        let mut inputs = ParsedInputs::start(sources, LayoutSet::default(), config);
        let (mut records, mut messages, mut stats) = (Vec::new(), Vec::new(), ReadStats::default());
        let mut streaming = FileReader::new(LayoutSet::default());
        while let Some(d) = inputs.next_chunk() {
            match d {
                Delivery::Chunk(c) => {
                    for r in c.records.inputs() {
                        records.push((c.input, r.interface.unwrap().to_string(), r.fields.bytes));
                    }
                    messages.extend(c.messages.iter().map(|(l, m)| (c.input, *l, m.clone())));
                    stats.add(&c.stats);
                }
                Delivery::Unparsed(u) => u.read(
                    &mut streaming,
                    |p, ctx| match RouteInput::of(&p.record, ctx).interface {
                        Some(id) => {
                            records.push((u.input, id.to_string(), p.record.bytes));
                            Ok(())
                        }
                        None => Err(MISSING_INTERFACE),
                    },
                    |r| messages.push((u.input, r.line, r.detail.to_string())),
                ),
                Delivery::Failed { .. } => panic!("no input fails here"),
            }
        }
        assert_eq!(inputs.reparsed(), 0, "the splitter followed every header line");
        inputs.close();
        stats.add(&streaming.stats);
        (records, messages, stats)
    }

    /// What one `FileReader` reads from each input in turn: the reference.
    fn read_serially(texts: &[String]) -> Delivered {
        let (mut records, mut messages, mut stats) = (Vec::new(), Vec::new(), ReadStats::default());
        for (i, text) in texts.iter().enumerate() {
            let mut reader = FileReader::new(LayoutSet::default());
            reader
                .read(
                    &mut text.as_bytes(),
                    |p, ctx| match RouteInput::of(&p.record, ctx).interface {
                        Some(id) => {
                            records.push((i, id.to_string(), p.record.bytes));
                            Ok(())
                        }
                        None => Err(MISSING_INTERFACE),
                    },
                    |r| messages.push((i, r.line, r.detail.to_string())),
                )
                .unwrap();
            stats.add(&reader.stats);
        }
        (records, messages, stats)
    }

    fn config(chunk_bytes: usize, threads: usize, in_flight: usize) -> ChunkConfig {
        ChunkConfig { chunk_bytes, threads, in_flight, max_record_bytes: usize::MAX }
    }

    fn sample_inputs() -> Vec<String> {
        let mut a = String::new();
        for i in 0..40 {
            a += &LINE.replace(" 300 ", &format!(" {i} "));
            a.push('\n');
            if i == 7 {
                a += "not a flow log\n";
            }
            if i == 20 {
                // From here on, two fields per line: every later chunk depends on this one.
                a += "interface-id bytes\n";
            }
            if i > 20 {
                a += &format!("eni-h{i} {i}\n");
            }
        }
        // A header whose layouts a later header restores, and a last line without its `\n`.
        let b = format!("bytes interface-id\n5 eni-x\n{LINE}\nversion account-id\n{LINE}");
        vec![a, String::new(), b]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Random inputs of flow-log lines, junk, blank lines, `{"message"}` records and header
        /// lines (which change the layouts of every later chunk), cut at random sizes: the
        /// chunks deliver exactly what one reader reading each input in turn does.
        #[test]
        fn any_inputs_any_cut_read_as_one_reader_reads_them(
            inputs in proptest::collection::vec(
                proptest::collection::vec(0usize..LINES.len(), 0..40), 1..4),
            chunk_bytes in 1usize..400,
            threads in 1usize..4,
            in_flight in 1usize..6,
            max_record_bytes in proptest::prop_oneof![proptest::strategy::Just(usize::MAX), 0usize..600],
        ) {
            let texts: Vec<String> = inputs
                .iter()
                .map(|lines| lines.iter().map(|&i| format!("{}\n", LINES[i])).collect())
                .collect();
            let sources = texts
                .iter()
                .enumerate()
                .map(|(i, t)| text_source(&format!("in{i}"), t.clone()))
                .collect();
            let config = ChunkConfig { max_record_bytes, ..config(chunk_bytes, threads, in_flight) };
            let got = deliver(sources, config);
            proptest::prop_assert_eq!(got, read_serially(&texts));
        }
    }

    /// Random chunks of the same lines, parsed with and without the plain-line shortcut:
    /// the same records, counts, rejections (with their samples and messages), layouts at the
    /// end, and oversize verdict.
    #[test]
    fn the_plain_line_shortcut_changes_nothing_a_chunk_delivers() {
        let mut runner = proptest::test_runner::TestRunner::default();
        let lines = proptest::collection::vec(0usize..LINES.len(), 0..30);
        let max = proptest::prop_oneof![proptest::strategy::Just(usize::MAX), 0usize..900];
        let started = proptest::option::of(proptest::strategy::Just(()));
        let custom_first = proptest::bool::ANY;
        runner
            .run(
                &(lines, max, started, custom_first),
                |(lines, max_record_bytes, started, custom_first)| {
                    let text: String = lines.iter().map(|&i| format!("{}\n", LINES[i])).collect();
                    // Under an earlier header's layouts, or the configured ones: the default set,
                    // or one whose first format is another (no line takes the shortcut until a
                    // header sets the default format).
                    let started = started.map(|()| LayoutSet::single(Layout::default_format()));
                    let configured = match custom_first {
                        true => {
                            LayoutSet::from_formats(&["interface-id bytes", "default"]).unwrap()
                        }
                        false => LayoutSet::default(),
                    };
                    let parse = |shortcut| {
                        let mut reader = FileReader::new(configured.clone());
                        let bytes = text.clone().into_bytes();
                        let c = parse_chunk_as(
                            &mut reader,
                            0,
                            bytes,
                            started.clone(),
                            max_record_bytes,
                            shortcut,
                        );
                        let rejects: Vec<_> = c
                            .rejects
                            .iter()
                            .map(|(r, n)| (r, n, c.rejects.sample(r).cloned()))
                            .collect();
                        (c.records, c.stats, rejects, c.messages, c.ended_under, c.oversized)
                    };
                    proptest::prop_assert_eq!(parse(true), parse(false), "{}", text);
                    Ok(())
                },
            )
            .unwrap();
    }

    /// Lines the property tests draw from: plain default-format lines the shortcut takes,
    /// and lines it must leave to the reader (malformed, wrapped, no interface, headers, a
    /// space too many, a trailing `\r`).
    const LINES: [&str; 15] = [
        LINE,
        "2 - eni-b 10.0.0.3 10.0.0.4 5 6 17 1 50 1700000001 1700000061 REJECT OK",
        "not a flow log",
        "",
        "interface-id bytes",
        "eni-h 7",
        "version interface-id account-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status",
        r#"{"message":"2 1 eni-w 10.0.0.1 10.0.0.2 1 2 6 3 9 1700000000 1700000060 ACCEPT OK"}"#,
        "2 - - 10.0.0.1 10.0.0.2 1 2 6 3 300 1700000000 1700000060 ACCEPT OK",
        "2 111111111111 eni-c 10.0.0.1 10.0.0.2 1 2 6 3 300 1700000000 1700000060 ACCEPT OK\r",
        "- 111111111111 eni-d 2001:db8::1 10.0.0.2 1 2 6 3 30 1700000000 1700000060 REJECT OK",
        "2 111111111111 eni-e - - - - - - - 1700000000 1700000060 - NODATA",
        "2 111111111111 eni-f 10.0.0.1 10.0.0.2 1 2 6 3 x 1700000000 1700000060 ACCEPT OK",
        "2  111111111111 eni-g 10.0.0.1 10.0.0.2 1 2 6 3 4 1700000000 1700000060 ACCEPT OK",
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status",
    ];

    #[test]
    fn chunks_come_back_as_one_reader_reads_the_inputs_whatever_the_cut() {
        let texts = sample_inputs();
        let reference = read_serially(&texts);
        assert!(reference.0.len() >= 40 && reference.1.len() >= 20, "the sample exercises both");
        for (chunk_bytes, threads, in_flight) in
            [(1, 1, 1), (7, 2, 3), (64, 3, 8), (300, 2, 2), (1 << 20, 2, 6)]
        {
            let sources = texts
                .iter()
                .enumerate()
                .map(|(i, t)| text_source(&format!("in{i}"), t.clone()))
                .collect();
            let got = deliver(sources, config(chunk_bytes, threads, in_flight));
            assert_eq!(got, reference, "chunks of {chunk_bytes} bytes, {threads} threads");
        }
    }

    #[test]
    fn a_failed_input_delivers_its_whole_lines_then_the_error_and_the_rest_goes_on() {
        struct FailAfter(io::Cursor<Vec<u8>>);
        impl io::Read for FailAfter {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(io::Error::other("disk on fire")),
                    n => Ok(n),
                }
            }
        }
        let broken = format!("{LINE}\n{LINE}\npartial");
        let failing: Opener = Box::new(move || {
            Ok(Box::new(io::BufReader::with_capacity(
                16,
                FailAfter(io::Cursor::new(broken.into_bytes())),
            )))
        });
        let sources = vec![
            Source { name: "bad".into(), open: failing, live: false },
            Source {
                name: "missing".into(),
                open: Box::new(|| Err(io::Error::other("no such"))),
                live: false,
            },
            text_source("good", format!("{LINE}\n")),
        ];
        let mut inputs = ParsedInputs::start(sources, LayoutSet::default(), config(8, 2, 2));
        let mut seen = Vec::new();
        while let Some(d) = inputs.next_chunk() {
            match d {
                Delivery::Chunk(c) => {
                    seen.push(format!("{}: {} records", c.input, c.records.len()))
                }
                Delivery::Failed { input, error } => seen.push(format!("{input}: {error}")),
                Delivery::Unparsed(_) => panic!("no chunk is oversized here"),
            }
        }
        let records_of = |input: &str| {
            seen.iter()
                .filter(|s| s.starts_with(input) && s.ends_with("records"))
                .map(|s| s.split(' ').nth(1).unwrap().parse::<usize>().unwrap())
                .sum::<usize>()
        };
        assert_eq!(records_of("0:"), 2, "{seen:?}");
        assert!(seen.contains(&"0: disk on fire".to_string()), "{seen:?}");
        assert!(seen.contains(&"1: no such".to_string()), "{seen:?}");
        assert_eq!(records_of("2:"), 1, "{seen:?}");
        assert_eq!(inputs.name(1), "missing");
    }

    /// Standard input fed as events happen: each line is delivered once it has arrived,
    /// while the input is still open (before, a chunk waited to fill).
    #[test]
    fn a_live_input_delivers_each_line_as_it_arrives() {
        struct Feed(std::sync::mpsc::Receiver<Vec<u8>>);
        impl io::Read for Feed {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Ok(bytes) = self.0.recv() else { return Ok(0) };
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(bytes.len())
            }
        }
        let (feed, fed) = std::sync::mpsc::channel();
        let open: Opener = Box::new(move || Ok(Box::new(io::BufReader::new(Feed(fed)))));
        let source = Source { name: "<stdin>".into(), open, live: true };
        let mut inputs =
            ParsedInputs::start(vec![source], LayoutSet::default(), ChunkConfig::default());
        let (out, delivered) = std::sync::mpsc::channel();
        let consumer = std::thread::spawn(move || {
            while let Some(Delivery::Chunk(c)) = inputs.next_chunk() {
                let _ = out.send(c.records.len());
            }
            inputs.close();
        });
        let wait = std::time::Duration::from_secs(60); // only reached if the line never comes
        for _ in 0..3 {
            feed.send(format!("{LINE}\n").into_bytes()).unwrap();
            assert_eq!(delivered.recv_timeout(wait), Ok(1), "the line waited for more input");
        }
        drop(feed);
        consumer.join().unwrap();
    }

    #[test]
    #[should_panic(expected = "the reader thread stopped before the end")]
    fn a_reader_that_panics_is_not_taken_for_the_end_of_the_input() {
        let open: Opener = Box::new(|| panic!("a broken input"));
        let source = Source { name: "broken".into(), open, live: false };
        let mut inputs =
            ParsedInputs::start(vec![source], LayoutSet::default(), ChunkConfig::default());
        while inputs.next_chunk().is_some() {}
    }

    #[test]
    fn a_consumer_that_stops_early_stops_every_thread() {
        let text: String = (0..2000).map(|_| format!("{LINE}\n")).collect();
        let mut inputs = ParsedInputs::start(
            vec![text_source("big", text)],
            LayoutSet::default(),
            config(64, 2, 2),
        );
        assert!(inputs.next_chunk().is_some());
        inputs.close(); // joins the splitter and the parse threads: a hang fails the test run
    }
}
