//! This module reads files and standard input, plain text or gzip (detected by magic bytes, so
//! `.gz` files and gzip'd stdin both work), one input line at a time.
//!
//! Each input line goes through the envelope decoder, so a file of `{"message":…}` lines or of
//! CloudWatch Logs payloads reads like a file of bare lines. An S3 header line (every token a
//! field name) sets the layout for the rest of that file; it may appear on any line, so that
//! concatenated S3 objects still read correctly.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::decode::{
    EnvelopeDecoder, Layout, LayoutSet, LineContext, ParsedLine, RejectReason, Rejects,
    parse_line_with,
};

/// An input: a file path, or `-` for standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    Path(PathBuf),
}

impl Input {
    pub fn from_arg(arg: &Path) -> Input {
        if arg == Path::new("-") { Input::Stdin } else { Input::Path(arg.to_owned()) }
    }

    /// The name used in messages: the path, or `<stdin>`.
    pub fn name(&self) -> Cow<'_, str> {
        match self {
            Input::Stdin => Cow::Borrowed("<stdin>"),
            Input::Path(p) => p.to_string_lossy(),
        }
    }

    /// Opens the input, decompressing gzip transparently.
    pub fn open(&self) -> io::Result<Box<dyn BufRead>> {
        let raw: Box<dyn Read> = match self {
            Input::Stdin => Box::new(io::stdin()),
            Input::Path(p) => Box::new(File::open(p)?),
        };
        open_reader(raw)
    }
}

/// Wraps a reader, decompressing it if it starts with the gzip magic bytes.
pub fn open_reader(raw: Box<dyn Read>) -> io::Result<Box<dyn BufRead>> {
    let mut reader = BufReader::with_capacity(1 << 16, raw);
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let gz = flate2::bufread::MultiGzDecoder::new(reader);
        Ok(Box::new(BufReader::with_capacity(1 << 16, gz)))
    } else {
        Ok(Box::new(reader))
    }
}

/// Counts for one or more inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Input lines read (an input line may hold a whole CloudWatch payload).
    pub lines: u64,
    /// S3 header lines that set a layout.
    pub headers: u64,
    /// Flow-log records that parsed.
    pub records: u64,
    /// Lines or envelopes rejected.
    pub rejected: u64,
}

impl ReadStats {
    /// Adds the counts of a later part of the input.
    pub fn add(&mut self, o: &ReadStats) {
        self.lines += o.lines;
        self.headers += o.headers;
        self.records += o.records;
        self.rejected += o.rejected;
    }
}

/// A record that parsed but that the consumer refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RejectReason,
    pub detail: &'static str,
}

/// A rejected input: where, why, and the message.
pub struct Rejection<'a> {
    /// 1-based input line number.
    pub line: u64,
    /// The index of the flow-log line within that input line's envelope (0 for plain lines).
    pub sub_line: usize,
    pub reason: RejectReason,
    pub detail: &'a dyn fmt::Display,
}

/// Reads flow-log records from inputs, keeping the decode state between files.
pub struct FileReader {
    layouts: LayoutSet,
    decoder: EnvelopeDecoder,
    line: Vec<u8>,
    pub rejects: Rejects,
    pub stats: ReadStats,
}

impl FileReader {
    pub fn new(layouts: LayoutSet) -> Self {
        FileReader {
            layouts,
            decoder: EnvelopeDecoder::default(),
            line: Vec::with_capacity(4096),
            rejects: Rejects::new(),
            stats: ReadStats::default(),
        }
    }

    /// The configured layouts (an input's header line replaces them for that input).
    pub fn layouts(&self) -> &LayoutSet {
        &self.layouts
    }

    /// Reads one input to its end, calling `on_record` for each record and `on_reject` for each
    /// rejection (which is also counted in [`FileReader::rejects`]). `on_record` may refuse a
    /// record that parsed; the refusal is counted and reported like a parse error.
    pub fn read(
        &mut self,
        input: &mut dyn BufRead,
        on_record: impl FnMut(&ParsedLine<'_, '_>, &LineContext<'_>) -> Result<(), Refusal>,
        on_reject: impl FnMut(&Rejection<'_>),
    ) -> io::Result<()> {
        self.read_part(input, None, on_record, on_reject).map(drop)
    }

    /// Reads a part of an input as [`FileReader::read`] reads a whole one (line numbers count
    /// from the part's start). `header_layouts` are the layouts an earlier header line of the
    /// input set, if any; the call returns those in effect at the part's end.
    pub fn read_part(
        &mut self,
        input: &mut dyn BufRead,
        mut header_layouts: Option<LayoutSet>,
        mut on_record: impl FnMut(&ParsedLine<'_, '_>, &LineContext<'_>) -> Result<(), Refusal>,
        mut on_reject: impl FnMut(&Rejection<'_>),
    ) -> io::Result<Option<LayoutSet>> {
        // A header line replaces the configured layouts for the rest of this input only.
        let mut line_no = 0u64;
        loop {
            // A line that lies whole in the input's buffer is handled in place; only one that
            // crosses the buffer's end is copied out (most lines are a hundred bytes or so).
            let buffered = input.fill_buf()?;
            if buffered.is_empty() {
                return Ok(header_layouts);
            }
            line_no += 1;
            if let Some(end) = memchr::memchr(b'\n', buffered) {
                self.handle_line(
                    &buffered[..end],
                    line_no,
                    &mut header_layouts,
                    &mut on_record,
                    &mut on_reject,
                );
                input.consume(end + 1);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            line.clear();
            input.read_until(b'\n', &mut line)?;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            self.handle_line(text, line_no, &mut header_layouts, &mut on_record, &mut on_reject);
            self.line = line;
        }
    }

    /// Handles one input line (without its `\n`): a header, or a flow-log line or envelope to
    /// decode.
    fn handle_line(
        &mut self,
        line: &[u8],
        line_no: u64,
        header_layouts: &mut Option<LayoutSet>,
        on_record: &mut impl FnMut(&ParsedLine<'_, '_>, &LineContext<'_>) -> Result<(), Refusal>,
        on_reject: &mut impl FnMut(&Rejection<'_>),
    ) {
        self.stats.lines += 1;
        if let Some(layout) = header_layout(line) {
            *header_layouts = Some(LayoutSet::single(layout));
            self.stats.headers += 1;
            return;
        }
        let layouts = header_layouts.as_ref().unwrap_or(&self.layouts);
        let rejects = &mut self.rejects;
        let stats = &mut self.stats;
        let mut sub_line = 0;
        let decoded = self.decoder.decode(line, |flow_line, ctx| {
            let at = (line_no, sub_line);
            parse_line_with(layouts, flow_line, |parsed| match parsed {
                Ok(parsed) => match on_record(parsed, ctx) {
                    Ok(()) => stats.records += 1,
                    Err(r) => reject(stats, rejects, on_reject, at, r.reason, &r.detail, flow_line),
                },
                Err(e) => reject(stats, rejects, on_reject, at, e.reason, &e, flow_line),
            });
            sub_line += 1;
        });
        if let Err(e) = decoded {
            // The sample keeps the bare detail (its reason is its key); the report says both.
            self.stats.rejected += 1;
            self.rejects.record(e.reason, &e.detail, line);
            on_reject(&Rejection { line: line_no, sub_line, reason: e.reason, detail: &e });
        }
    }
}

/// The layout an S3 header line names, if `line` is one. Only lines that [`may_be_header`]
/// are looked at, which keeps this cheap enough for every line.
pub fn header_layout(line: &[u8]) -> Option<Layout> {
    if !may_be_header(line) {
        return None;
    }
    std::str::from_utf8(line).ok().and_then(Layout::from_header)
}

/// Whether `line` (or text from a line's start) may be an S3 header line: it starts with a
/// lowercase letter (flow-log lines start with a digit, `-`, `{` or gzip's magic).
#[inline]
pub fn may_be_header(line: &[u8]) -> bool {
    line.first().is_some_and(u8::is_ascii_lowercase)
}

/// Counts a rejected flow-log line, keeps it as its reason's sample, and reports it.
fn reject(
    stats: &mut ReadStats,
    rejects: &mut Rejects,
    on_reject: &mut impl FnMut(&Rejection<'_>),
    (line, sub_line): (u64, usize),
    reason: RejectReason,
    detail: &dyn fmt::Display,
    input: &[u8],
) {
    stats.rejected += 1;
    rejects.record(reason, detail, input);
    on_reject(&Rejection { line, sub_line, reason, detail });
}

#[cfg(test)]
mod tests {
    use super::*;

    type ReadAll = (Vec<String>, Vec<(u64, RejectReason)>, ReadStats);

    fn read_all(data: &[u8], layouts: LayoutSet) -> ReadAll {
        read_from(&mut open_reader(Box::new(io::Cursor::new(data.to_vec()))).unwrap(), layouts)
    }

    fn read_from(mut input: &mut dyn BufRead, layouts: LayoutSet) -> ReadAll {
        let mut reader = FileReader::new(layouts);
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        reader
            .read(
                &mut input,
                |p, _| {
                    records.push(format!("{:?}", p.record.interface_id));
                    Ok(())
                },
                |r| rejected.push((r.line, r.reason)),
            )
            .unwrap();
        (records, rejected, reader.stats)
    }

    #[test]
    fn header_lines_set_the_layout_for_the_rest_of_the_input() {
        let data = b"interface-id srcaddr\neni-1 10.0.0.1\neni-x 10.0.0.1 extra\nsrcaddr interface-id\n10.0.0.2 eni-2\n";
        let (records, rejected, stats) = read_all(data, LayoutSet::default());
        assert_eq!(records, ["Some(\"eni-1\")", "Some(\"eni-2\")"]);
        assert_eq!(rejected, [(3, RejectReason::FieldCount)]);
        assert_eq!(stats, ReadStats { lines: 5, headers: 2, records: 2, rejected: 1 });
    }

    #[test]
    fn lines_crossing_the_read_buffer_read_as_lines_inside_it() {
        let data = b"interface-id srcaddr\neni-1 10.0.0.1\neni-x 10.0.0.1 extra\n\nsrcaddr interface-id\n10.0.0.2 eni-2";
        let whole = read_all(data, LayoutSet::default());
        for capacity in 1..=data.len() + 1 {
            let mut input = io::BufReader::with_capacity(capacity, &data[..]);
            let got = read_from(&mut input, LayoutSet::default());
            assert_eq!(got, whole, "buffer of {capacity} bytes");
        }
        assert_eq!(whole.2.records, 2);
    }

    #[test]
    fn gzip_input_is_detected_by_magic() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"interface-id\neni-9\n").unwrap();
        let (records, _, _) = read_all(&e.finish().unwrap(), LayoutSet::default());
        assert_eq!(records, ["Some(\"eni-9\")"]);
    }
}
