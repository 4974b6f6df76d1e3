//! This module reads inputs in chunks of whole lines, decodes and parses each chunk on a pool of
//! threads, and hands the chunks back in input order, so that replay's router (the engine's one
//! sequencer) only routes. If one thread read, decoded, parsed and routed every line, replay
//! would run at the speed of that thread while the other cores waited on it.
//!
//! ```text
//!   splitter ──chunks──► parse thread ×N ──parsed chunk──┐
//!      └──── one receipt per chunk, in input order ─────┴──► ParsedInputs::next_chunk (router)
//! ```
//!
//! - The **splitter** reads each input (gzip or plain, through [`Input::open`]) into chunks
//!   that end at a line's end, and queues one receipt per chunk, in order, on a bounded channel.
//!   Read-ahead is bounded: at most `in_flight` receipts are queued, and each chunk holds about
//!   `chunk_bytes` of text plus, once parsed, its records (about the size of its lines).
//! - A **parse thread** reads a chunk with its own [`FileReader`], the same reader that `parse`
//!   uses, into [`ParsedRecords`] with the chunk's counts, rejections and messages.
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
//! as an [`UnparsedChunk`], which the router reads a record at a time.
//!
//! **Live input.** Standard input may be a pipe fed as events happen (and `--time processing`
//! stamps records when they are routed), so a live source sends its whole lines whenever a read
//! has drained what was available, rather than waiting for a full chunk.

mod parse;
mod split;
#[cfg(test)]
mod tests;

use std::io::{self, BufRead};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use self::parse::{parse_chunk, parse_jobs};
use self::split::split;
use super::file::{FileReader, Input, ReadStats, Refusal, Rejection};
use crate::decode::{LayoutSet, LineContext, ParsedLine, RejectReason, Rejects};
use crate::record::ParsedRecords;

/// Opens one input on the splitter's thread.
pub(crate) type Opener = Box<dyn FnOnce() -> io::Result<Box<dyn BufRead>> + Send>;

/// One input: its name in messages, and how to open it.
pub(crate) struct Source {
    pub name: String,
    pub open: Opener,
    /// Whether the input is fed as events happen (standard input): its whole lines are sent as
    /// soon as a read has drained what was available.
    pub live: bool,
}

impl Source {
    /// A file or standard input (live).
    pub(crate) fn input(input: Input) -> Source {
        let live = input == Input::Stdin;
        Source { name: input.name().into_owned(), open: Box::new(move || input.open()), live }
    }
}

/// How the inputs are cut up and parsed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkConfig {
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
pub(crate) const MISSING_INTERFACE: Refusal = Refusal {
    reason: RejectReason::MissingInterface,
    detail: "the record names no interface (no interface-id, resource-id or tgw-attachment-id)",
};

/// A chunk of one input, parsed.
pub(crate) struct ParsedChunk {
    /// The input's index in the sources.
    pub input: usize,
    /// Its records, in order, ready to route.
    pub records: ParsedRecords,
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
pub(crate) struct UnparsedChunk {
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
    pub(crate) fn read(
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
pub(crate) enum Delivery {
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
pub(crate) struct ParsedInputs {
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
    pub(crate) fn start(
        sources: Vec<Source>,
        layouts: LayoutSet,
        config: ChunkConfig,
    ) -> ParsedInputs {
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
    pub(crate) fn name(&self, input: usize) -> &str {
        self.names.get(input).map_or("<input>", String::as_str)
    }

    /// Returns the next chunk in input order, parsed under the layouts in effect for it and with
    /// its messages' line numbers counted from its input's start, or `None` after the last.
    ///
    /// Panics if a reader or parse thread has panicked, rather than end the input early.
    pub(crate) fn next_chunk(&mut self) -> Option<Delivery> {
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

    #[cfg(test)]
    /// How many chunks were parsed again because the splitter's layouts for them were wrong
    /// (none, unless the splitter and the parser disagree about a header line).
    pub(crate) fn reparsed(&self) -> u64 {
        self.reparsed
    }

    /// Waits for the threads, once [`ParsedInputs::next_chunk`] has returned `None` (or to stop
    /// early: the threads stop once their queues close, though a splitter blocked reading
    /// standard input stops only when its read returns).
    pub(crate) fn close(self) {
        let ParsedInputs { receipts, threads, .. } = self;
        drop(receipts);
        for t in threads {
            if let Err(panic) = t.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}
