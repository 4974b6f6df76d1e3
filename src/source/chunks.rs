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
//!   that end at a line's end, and queues one receipt per chunk, in order, on a bounded channel:
//!   at most `in_flight` chunks are read ahead, whatever the input's size.
//! - A **parse thread** reads a chunk with its own [`FileReader`], the decoder `parse` and
//!   `replay` have always used, into [`PreparedRecords`] with the chunk's counts, rejections
//!   and messages.
//! - [`ParsedInputs::next_chunk`] waits for each receipt in turn, so chunks come back in input order
//!   and line numbers are counted from the input's start.
//!
//! **Header lines.** An S3 header line sets the layout for the rest of its input, so the
//! layouts a chunk is read under depend on every earlier chunk. A chunk is parsed under the
//! layouts last known when it was queued; [`ParsedInputs::next_chunk`] checks that guess against the
//! layouts the chunks before it really ended with, and parses the chunk again, in order, when
//! the guess was wrong. That happens only to the few chunks read ahead past a header that
//! changed the layouts, since the splitter takes up each change as soon as it is known.

use std::io::{self, BufRead};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::file::{FileReader, Input, ReadStats, Refusal};
use crate::decode::{LayoutSet, RejectReason, Rejects};
use crate::window::event::RouteInput;
use crate::window::prepared::PreparedRecords;

/// Opens one input on the splitter's thread.
pub type Opener = Box<dyn FnOnce() -> io::Result<Box<dyn BufRead>> + Send>;

/// One input: its name in messages, and how to open it.
pub struct Source {
    pub name: String,
    pub open: Opener,
}

impl Source {
    /// A file or standard input.
    pub fn input(input: Input) -> Source {
        Source { name: input.name().into_owned(), open: Box::new(move || input.open()) }
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
}

impl Default for ChunkConfig {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        // A chunk of 512 KiB is about 4,500 lines: long enough that handing it over costs
        // nothing per line, short enough that the read-ahead stays a few megabytes.
        ChunkConfig { chunk_bytes: 512 * 1024, threads, in_flight: 2 * threads + 2 }
    }
}

/// A record refused for naming no interface: the router would refuse it, so it is counted as a
/// rejection when it parses.
const MISSING_INTERFACE: Refusal = Refusal {
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
    /// Its text, kept in case it must be parsed again under other layouts.
    text: Vec<u8>,
}

/// What [`ParsedInputs::next_chunk`] hands back.
pub enum Delivery {
    Chunk(Box<ParsedChunk>),
    /// Reading input `input` failed; what was read before the failure has been delivered.
    Failed {
        input: usize,
        error: io::Error,
    },
}

enum Receipt {
    Chunk(Receiver<ParsedChunk>),
    Failed { input: usize, error: io::Error },
}

struct Job {
    input: usize,
    text: Vec<u8>,
    started_under: Option<LayoutSet>,
    reply: SyncSender<ParsedChunk>,
}

/// The layouts the chunks delivered so far ended with, for the splitter's next guess.
#[derive(Default)]
struct Known {
    input: usize,
    layouts: Option<LayoutSet>,
}

/// Parsed chunks of the inputs, in input order. See the module documentation.
pub struct ParsedInputs {
    names: Vec<String>,
    receipts: Receiver<Receipt>,
    known: Arc<Mutex<Known>>,
    /// Parses again the chunks whose guess was wrong.
    reader: FileReader,
    /// The input being delivered, the lines delivered of it, and its layouts so far.
    input: usize,
    lines: u64,
    layouts: Option<LayoutSet>,
    threads: Vec<JoinHandle<()>>,
}

impl ParsedInputs {
    /// Starts reading `sources` under `layouts`.
    pub fn start(sources: Vec<Source>, layouts: LayoutSet, config: ChunkConfig) -> ParsedInputs {
        let names = sources.iter().map(|s| s.name.clone()).collect();
        let known = Arc::new(Mutex::new(Known::default()));
        let (receipts_tx, receipts) = sync_channel::<Receipt>(config.in_flight.max(1));
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(config.in_flight.max(1));
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let mut threads = Vec::new();
        for i in 0..config.threads.max(1) {
            let (jobs, layouts) = (jobs_rx.clone(), layouts.clone());
            let thread = std::thread::Builder::new()
                .name(format!("vpcflowd-parse-{i}"))
                .spawn(move || parse_jobs(&jobs, layouts))
                .expect("spawn parse thread");
            threads.push(thread);
        }
        let splitter_known = known.clone();
        let thread = std::thread::Builder::new()
            .name("vpcflowd-read".into())
            .spawn(move || {
                split(sources, config.chunk_bytes, &splitter_known, &jobs_tx, &receipts_tx)
            })
            .expect("spawn reader thread");
        threads.push(thread);
        ParsedInputs {
            names,
            receipts,
            known,
            reader: FileReader::new(layouts),
            input: 0,
            lines: 0,
            layouts: None,
            threads,
        }
    }

    /// The name of input `input`, for messages.
    pub fn name(&self, input: usize) -> &str {
        self.names.get(input).map_or("<input>", String::as_str)
    }

    /// The next chunk in input order, parsed under the layouts in effect for it, its
    /// messages' line numbers counted from its input's start; `None` after the last.
    pub fn next_chunk(&mut self) -> Option<Delivery> {
        let receipt = self.receipts.recv().ok()?;
        let mut chunk = match receipt {
            Receipt::Failed { input, error } => return Some(Delivery::Failed { input, error }),
            // A parse thread only stops early by panicking, which stops this one too.
            Receipt::Chunk(rx) => rx.recv().expect("a parse thread stopped"),
        };
        if chunk.input != self.input {
            (self.input, self.lines, self.layouts) = (chunk.input, 0, None);
        }
        if chunk.started_under != self.layouts {
            chunk = parse_chunk(
                &mut self.reader,
                chunk.input,
                std::mem::take(&mut chunk.text),
                self.layouts.clone(),
            );
        }
        if chunk.ended_under != self.layouts {
            self.layouts = chunk.ended_under.clone();
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            *known = Known { input: self.input, layouts: self.layouts.clone() };
        }
        for (line, _) in &mut chunk.messages {
            *line += self.lines;
        }
        self.lines += chunk.stats.lines;
        chunk.text = Vec::new();
        Some(Delivery::Chunk(Box::new(chunk)))
    }
}

impl ParsedInputs {
    /// Stops reading and waits for the threads (which stop on their own once this is dropped;
    /// a splitter blocked reading standard input would keep this waiting, so only call it when
    /// the inputs are known to end).
    pub fn close(self) {
        let ParsedInputs { receipts, threads, .. } = self;
        // Closing the receipts stops the splitter, whose end stops the parse threads.
        drop(receipts);
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The splitter: cuts every input into chunks of whole lines and queues them.
fn split(
    sources: Vec<Source>,
    chunk_bytes: usize,
    known: &Mutex<Known>,
    jobs: &SyncSender<Job>,
    receipts: &SyncSender<Receipt>,
) {
    for (input, source) in sources.into_iter().enumerate() {
        let mut send = |text: Vec<u8>| {
            let guess = known.lock().unwrap_or_else(|e| e.into_inner());
            let started_under = if guess.input == input { guess.layouts.clone() } else { None };
            drop(guess);
            let (reply, parsed) = sync_channel(1);
            jobs.send(Job { input, text, started_under, reply }).is_ok()
                && receipts.send(Receipt::Chunk(parsed)).is_ok()
        };
        let read = (source.open)().and_then(|mut r| cut(&mut *r, chunk_bytes, &mut send));
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
}

/// Cuts one input into chunks of about `chunk_bytes` that end at a line's end (the last may
/// end without one). Returns `Ok(false)` once `send` refuses a chunk. On a read error, the whole
/// lines read before it are sent first.
fn cut(
    input: &mut dyn BufRead,
    chunk_bytes: usize,
    send: &mut impl FnMut(Vec<u8>) -> bool,
) -> io::Result<bool> {
    let chunk_bytes = chunk_bytes.max(1);
    let mut chunk = Vec::with_capacity(chunk_bytes);
    let mut target = chunk_bytes;
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
        chunk.extend_from_slice(&buffered[..take]);
        input.consume(take);
        if chunk.len() < target {
            continue;
        }
        match memchr::memrchr(b'\n', &chunk) {
            Some(end) => {
                let mut next = Vec::with_capacity(chunk_bytes.max(chunk.len() - end));
                next.extend_from_slice(&chunk[end + 1..]);
                chunk.truncate(end + 1);
                if !send(std::mem::replace(&mut chunk, next)) {
                    return Ok(false);
                }
                target = chunk_bytes.max(chunk.len() + 1);
            }
            // One line longer than a chunk: read on until it ends.
            None => target = target.saturating_mul(2),
        }
    }
}

/// A parse thread: parses chunks until the splitter stops.
fn parse_jobs(jobs: &Mutex<Receiver<Job>>, layouts: LayoutSet) {
    let mut reader = FileReader::new(layouts);
    loop {
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(Job { input, text, started_under, reply }) = job else { return };
        // The consumer may have gone; then the chunk is simply not wanted.
        let _ = reply.send(parse_chunk(&mut reader, input, text, started_under));
    }
}

/// Parses one chunk under `started_under` (an earlier header's layouts) or the configured ones.
fn parse_chunk(
    reader: &mut FileReader,
    input: usize,
    text: Vec<u8>,
    started_under: Option<LayoutSet>,
) -> ParsedChunk {
    reader.stats = ReadStats::default();
    reader.rejects = Rejects::new();
    // About 110 bytes a line.
    let mut records = PreparedRecords::with_capacity(text.len() / 96 + 1);
    let mut messages = Vec::new();
    let ended_under = reader
        .read_part(
            &mut &text[..],
            started_under.clone(),
            |parsed, ctx| {
                let input = RouteInput::of(&parsed.record, ctx);
                if records.push(&input) { Ok(()) } else { Err(MISSING_INTERFACE) }
            },
            |r| messages.push((r.line, r.detail.to_string())),
        )
        // Reading a slice cannot fail.
        .unwrap_or(None);
    ParsedChunk {
        input,
        records,
        stats: reader.stats,
        rejects: std::mem::take(&mut reader.rejects),
        messages,
        started_under,
        ended_under,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str =
        "2 111111111111 eni-a 10.0.0.1 10.0.0.2 1 2 6 3 300 1700000000 1700000060 ACCEPT OK";

    fn text_source(name: &str, text: String) -> Source {
        let open: Opener = Box::new(move || Ok(Box::new(io::Cursor::new(text.into_bytes()))));
        Source { name: name.into(), open }
    }

    /// Everything delivered: (input, interface, bytes) per record, and (input, line, message)
    /// per rejection, plus summed counts.
    type Delivered = (Vec<(usize, String, Option<u64>)>, Vec<(usize, u64, String)>, ReadStats);

    fn deliver(sources: Vec<Source>, config: ChunkConfig) -> Delivered {
        let mut inputs = ParsedInputs::start(sources, LayoutSet::default(), config);
        let (mut records, mut messages, mut stats) = (Vec::new(), Vec::new(), ReadStats::default());
        while let Some(d) = inputs.next_chunk() {
            let Delivery::Chunk(c) = d else { panic!("no input fails here") };
            for r in c.records.inputs() {
                records.push((c.input, r.interface.unwrap().to_string(), r.fields.bytes));
            }
            messages.extend(c.messages.iter().map(|(l, m)| (c.input, *l, m.clone())));
            stats.add(&c.stats);
        }
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
        ChunkConfig { chunk_bytes, threads, in_flight }
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
            let got = deliver(sources, config(chunk_bytes, threads, in_flight));
            proptest::prop_assert_eq!(got, read_serially(&texts));
        }
    }

    /// Lines the property test draws from.
    const LINES: [&str; 9] = [
        LINE,
        "2 - eni-b 10.0.0.3 10.0.0.4 5 6 17 1 50 1700000001 1700000061 REJECT OK",
        "not a flow log",
        "",
        "interface-id bytes",
        "eni-h 7",
        "version interface-id account-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status",
        r#"{"message":"2 1 eni-w 10.0.0.1 10.0.0.2 1 2 6 3 9 1700000000 1700000060 ACCEPT OK"}"#,
        "2 - - 10.0.0.1 10.0.0.2 1 2 6 3 300 1700000000 1700000060 ACCEPT OK",
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
            Source { name: "bad".into(), open: failing },
            Source { name: "missing".into(), open: Box::new(|| Err(io::Error::other("no such"))) },
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
