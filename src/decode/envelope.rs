//! Envelope decoding turns one Firehose or Kinesis record (or one input line) into zero or more
//! flow-log lines.
//!
//! What arrives depends on the path the flow log took (see `shared/reference`, section 2):
//!
//! | record starts with | it is | yields |
//! |---|---|---|
//! | nothing | an empty record (allowed by Firehose) | nothing |
//! | `1f 8b` | gzip: a CloudWatch Logs subscription payload, or gzip'd text | what its content yields |
//! | `{` | JSON: `{"message":"…"}` (flow log → Firehose) or a CloudWatch payload | each message |
//! | anything else | bare text, one or more `\n`-separated lines | each line |
//!
//! A CloudWatch `DATA_MESSAGE` yields each `logEvents[].message` with the payload's owner, log
//! group and log stream as [`LineContext`]; a `CONTROL_MESSAGE` yields nothing. Several JSON
//! values in one record (concatenated or newline-separated) are each decoded.
//!
//! A record that is exactly `{"message":"…"}` with printable ASCII and no escapes inside (every
//! record of a flow log publishing straight to Firehose) skips the JSON parser, because the parser
//! would read it the same way; a property test checks that the two agree.
//!
//! Lines borrow from the record, or from the decoder's reused decompression buffer; JSON strings
//! are borrowed unless they contain escapes. Decoding allocates per gzip stream and per
//! CloudWatch payload (its event list), never per line.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::reject::RejectReason;

/// The default cap on one record's decompressed size.
pub(crate) const DEFAULT_MAX_DECOMPRESSED: usize = 16 * 1024 * 1024;

/// Where a line came from, when its envelope says so (CloudWatch Logs payloads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineContext<'a> {
    /// The AWS account that owns the log group.
    pub owner: Option<&'a str>,
    pub log_group: Option<&'a str>,
    /// The log stream, which for VPC flow logs names the interface (`eni-…-all`).
    pub log_stream: Option<&'a str>,
    /// The region, when the transport says it (Firehose common attributes).
    pub region: Option<&'a str>,
}

/// What kind of envelope a record was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeKind {
    Empty,
    Text,
    /// One or more `{"message":…}` values.
    JsonWrapped,
    CloudWatchData,
    CloudWatchControl,
}

/// The outcome of decoding one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub kind: EnvelopeKind,
    /// Whether the record was gzip-compressed.
    pub gzip: bool,
    /// How many lines were handed to the callback.
    pub lines: usize,
}

/// A record that could not be (fully) decoded. Lines handed out before the error stand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct EnvelopeError {
    pub reason: RejectReason,
    pub detail: String,
    /// How many lines were handed out before the error.
    pub lines: usize,
}

/// Decodes envelopes, keeping a decompression buffer across records.
#[derive(Debug)]
pub struct EnvelopeDecoder {
    scratch: Vec<u8>,
    max_decompressed: usize,
}

impl Default for EnvelopeDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_DECOMPRESSED)
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl EnvelopeDecoder {
    /// A decoder that refuses records decompressing to more than `max_decompressed` bytes.
    pub fn new(max_decompressed: usize) -> Self {
        EnvelopeDecoder { scratch: Vec::new(), max_decompressed }
    }

    /// Decodes one record, handing each flow-log line (without its newline) to `on_line`.
    ///
    /// ```
    /// use vpcflowd::decode::{EnvelopeDecoder, EnvelopeKind};
    /// let mut decoder = EnvelopeDecoder::default();
    /// let mut lines = Vec::new();
    /// let record = br#"{"message":"2 123456789010 eni-1 - - - - - - - 1 2 - NODATA"}"#;
    /// let decoded = decoder
    ///     .decode(record, |line, _ctx| lines.push(line.to_vec()))
    ///     .unwrap();
    /// assert_eq!(decoded.kind, EnvelopeKind::JsonWrapped);
    /// assert_eq!(lines, [b"2 123456789010 eni-1 - - - - - - - 1 2 - NODATA".to_vec()]);
    /// ```
    pub fn decode<F>(&mut self, record: &[u8], mut on_line: F) -> Result<Decoded, EnvelopeError>
    where
        F: FnMut(&[u8], &LineContext<'_>),
    {
        if !record.starts_with(&GZIP_MAGIC) {
            return decode_plain(record, false, &mut on_line);
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let result = gunzip(record, &mut buf, self.max_decompressed)
            .and_then(|()| decode_plain(&buf, true, &mut on_line));
        self.scratch = buf;
        result
    }
}

fn gunzip(record: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), EnvelopeError> {
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(record)
        .take(limit)
        .read_to_end(out)
        .map_err(|e| error(RejectReason::InvalidGzip, e, 0))?;
    if out.len() > max {
        return Err(error(
            RejectReason::DecompressedTooLarge,
            format_args!("decompresses to more than {max} bytes"),
            0,
        ));
    }
    Ok(())
}

fn error(reason: RejectReason, detail: impl fmt::Display, lines: usize) -> EnvelopeError {
    EnvelopeError { reason, detail: detail.to_string(), lines }
}

fn decode_plain<F>(data: &[u8], gzip: bool, on_line: &mut F) -> Result<Decoded, EnvelopeError>
where
    F: FnMut(&[u8], &LineContext<'_>),
{
    let first = data.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        // The data is empty or only whitespace, so it holds no lines. Whitespace alone is what an
        // empty record plus a delimiter looks like.
        return Ok(Decoded { kind: EnvelopeKind::Empty, gzip, lines: 0 });
    };
    if data[first..].starts_with(&GZIP_MAGIC) {
        return Err(error(RejectReason::NestedGzip, "gzip inside gzip", 0));
    }
    if data[first] == b'{' {
        return decode_json(&data[first..], gzip, on_line);
    }
    let lines = for_each_line(data, |line| on_line(line, &LineContext::default()));
    Ok(Decoded { kind: EnvelopeKind::Text, gzip, lines })
}

/// Calls `f` with each `\n`-terminated or final line; a final empty piece is not a line.
/// Returns the number of lines.
pub(crate) fn for_each_line(data: &[u8], mut f: impl FnMut(&[u8])) -> usize {
    let mut start = 0;
    let mut n = 0;
    for nl in memchr::memchr_iter(b'\n', data) {
        f(&data[start..nl]);
        n += 1;
        start = nl + 1;
    }
    if start < data.len() {
        f(&data[start..]);
        n += 1;
    }
    n
}

fn decode_json<F>(data: &[u8], gzip: bool, on_line: &mut F) -> Result<Decoded, EnvelopeError>
where
    F: FnMut(&[u8], &LineContext<'_>),
{
    if let Some(line) = plain_message(data) {
        // The line holds no byte below 0x20 and so no newline: it is one line, or none if empty.
        let lines = usize::from(!line.is_empty());
        if lines == 1 {
            on_line(line, &LineContext::default());
        }
        return Ok(Decoded { kind: EnvelopeKind::JsonWrapped, gzip, lines });
    }
    decode_json_values(data, gzip, on_line)
}

/// Returns the line of a record that is exactly `{"message":"…"}` (then only whitespace) with
/// printable ASCII inside and nothing to unescape, which is how a flow log publishing straight to
/// Firehose writes every record. A JSON parser reads such a record the same way (its string is the
/// bytes between the quotes, and ASCII is valid UTF-8), so the record skips the parser; anything
/// else (escapes, spacing, other keys, several values, non-ASCII) returns `None` and is parsed.
#[inline]
fn plain_message(data: &[u8]) -> Option<&[u8]> {
    const OPEN: &[u8] = br#"{"message":""#;
    let rest = data.strip_prefix(OPEN)?;
    let end = memchr::memchr(b'"', rest)?;
    let (line, tail) = rest.split_at(end);
    if !tail[1..].strip_prefix(b"}")?.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    // The fold is branch-free so that it vectorises, and it makes one pass over the line.
    let unusual = line.iter().fold(false, |u, &b| u | !(0x20..0x80).contains(&b) | (b == b'\\'));
    (!unusual).then_some(line)
}

/// Decodes one or more JSON values (wrapped lines, CloudWatch payloads) with a JSON parser.
fn decode_json_values<F>(data: &[u8], gzip: bool, on_line: &mut F) -> Result<Decoded, EnvelopeError>
where
    F: FnMut(&[u8], &LineContext<'_>),
{
    let mut lines = 0;
    let mut kind = None;
    for value in serde_json::Deserializer::from_slice(data).into_iter::<JsonRecord<'_>>() {
        let value = value.map_err(|e| error(RejectReason::InvalidJson, e, lines))?;
        let this = match value.message_type {
            Some(message_type) => {
                let ctx = LineContext {
                    owner: value.owner.as_deref(),
                    log_group: value.log_group.as_deref(),
                    log_stream: value.log_stream.as_deref(),
                    region: None,
                };
                match &*message_type.0 {
                    "DATA_MESSAGE" => {
                        let events = value.log_events.ok_or_else(|| {
                            error(
                                RejectReason::UnrecognisedJson,
                                "DATA_MESSAGE without logEvents",
                                lines,
                            )
                        })?;
                        for event in &events {
                            lines +=
                                for_each_line(event.message.0.as_bytes(), |l| on_line(l, &ctx));
                        }
                        EnvelopeKind::CloudWatchData
                    }
                    "CONTROL_MESSAGE" => EnvelopeKind::CloudWatchControl,
                    other => {
                        return Err(error(
                            RejectReason::UnknownMessageType,
                            format_args!("messageType `{other}`"),
                            lines,
                        ));
                    }
                }
            }
            None => {
                let message = value.message.ok_or_else(|| {
                    error(
                        RejectReason::UnrecognisedJson,
                        "a JSON record with neither `message` nor `messageType`",
                        lines,
                    )
                })?;
                lines +=
                    for_each_line(message.0.as_bytes(), |l| on_line(l, &LineContext::default()));
                EnvelopeKind::JsonWrapped
            }
        };
        // A record mixing kinds is reported by its first data-carrying kind.
        kind = match kind {
            None | Some(EnvelopeKind::CloudWatchControl) => Some(this),
            k => k,
        };
    }
    Ok(Decoded { kind: kind.unwrap_or(EnvelopeKind::Empty), gzip, lines })
}

/// One JSON value of a record: a wrapped line, or a CloudWatch Logs subscription payload.
#[derive(Deserialize)]
struct JsonRecord<'a> {
    #[serde(borrow, default)]
    message: Option<JsonStr<'a>>,
    #[serde(rename = "messageType", borrow, default)]
    message_type: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    owner: Option<JsonStr<'a>>,
    #[serde(rename = "logGroup", borrow, default)]
    log_group: Option<JsonStr<'a>>,
    #[serde(rename = "logStream", borrow, default)]
    log_stream: Option<JsonStr<'a>>,
    #[serde(rename = "logEvents", borrow, default)]
    log_events: Option<Vec<LogEvent<'a>>>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    message: JsonStr<'a>,
}

/// A JSON string borrowed from the input when it has no escapes, owned otherwise.
/// (serde's `Cow<str>` support only borrows for a bare `Cow` field, not inside `Option`.)
struct JsonStr<'a>(Cow<'a, str>);

impl std::ops::Deref for JsonStr<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    type Lines = Vec<(String, Option<String>)>;

    fn lines_of(record: &[u8]) -> (Result<Decoded, EnvelopeError>, Lines) {
        let mut out = Vec::new();
        let r = EnvelopeDecoder::default().decode(record, |l, ctx| {
            out.push((String::from_utf8_lossy(l).into_owned(), ctx.log_stream.map(str::to_owned)))
        });
        (r, out)
    }

    /// What one JSON path makes of a record: the outcome (or the error) and the lines.
    type Outcome = (Result<Decoded, EnvelopeError>, Vec<Vec<u8>>);

    fn both_json_paths(record: &[u8]) -> [Outcome; 2] {
        let run = |fast: bool| {
            let mut out = Vec::new();
            let mut on_line = |l: &[u8], _: &LineContext<'_>| out.push(l.to_vec());
            let r = if fast {
                decode_json(record, false, &mut on_line)
            } else {
                decode_json_values(record, false, &mut on_line)
            };
            (r, out)
        };
        [run(true), run(false)]
    }

    #[test]
    fn plain_messages_skip_the_json_parser_only_when_it_would_agree() {
        let line = "2 123456789010 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1 2 ACCEPT OK";
        let plain = format!(r#"{{"message":"{line}"}}"#);
        assert_eq!(plain_message(plain.as_bytes()), Some(line.as_bytes()));
        assert_eq!(plain_message(format!("{plain}\n ").as_bytes()), Some(line.as_bytes()));
        for parsed in [
            format!(r#"{{"message": "{line}"}}"#),
            format!(r#"{{"message":"{line}","x":1}}"#),
            format!(r#"{{"message":"{line}"}}{{"message":"{line}"}}"#),
            r#"{"message":"a\"b"}"#.to_owned(),
            r#"{"message":"a\nb"}"#.to_owned(),
            "{\"message\":\"é\"}".to_owned(),
            "{\"message\":\"a\tb\"}".to_owned(),
            r#"{"message":"a""#.to_owned(),
            r#"{"message":"a"}x"#.to_owned(),
        ] {
            assert_eq!(plain_message(parsed.as_bytes()), None, "{parsed}");
        }
    }

    proptest::proptest! {
        /// The shortcut and the parser agree on every record, printable or not, well-formed
        /// or not.
        #[test]
        fn the_plain_message_shortcut_agrees_with_the_parser(
            content in "[ -~]{0,40}|[\\x00-\\x7f]{0,20}|\\PC{0,20}",
            quoted in proptest::bool::ANY,
            tail in "[ \\n]{0,2}|[}x\"]{0,2}",
        ) {
            let body = if quoted {
                serde_json::to_string(&content).unwrap()
            } else {
                format!("\"{content}\"")
            };
            let record = format!(r#"{{"message":{body}}}{tail}"#);
            let [fast, parsed] = both_json_paths(record.as_bytes());
            proptest::prop_assert_eq!(fast, parsed);
        }

        /// The shortcut and the parser also agree on raw bytes between the quotes, invalid
        /// UTF-8 included.
        #[test]
        fn the_plain_message_shortcut_agrees_on_raw_bytes(
            content in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
        ) {
            let record = [br#"{"message":""#.as_slice(), &content, br#""}"#].concat();
            let [fast, parsed] = both_json_paths(&record);
            proptest::prop_assert_eq!(fast, parsed);
        }
    }

    #[test]
    fn bare_text_yields_each_line() {
        let (r, lines) = lines_of(b"a b\nc d\n");
        assert_eq!(r.unwrap(), Decoded { kind: EnvelopeKind::Text, gzip: false, lines: 2 });
        assert_eq!(lines[1].0, "c d");
    }

    #[test]
    fn empty_records_yield_nothing() {
        assert_eq!(lines_of(b"").0.unwrap().kind, EnvelopeKind::Empty);
        assert_eq!(lines_of(b"\n").0.unwrap().lines, 0);
        assert_eq!(
            lines_of(&gzip(b"")).0.unwrap(),
            Decoded { kind: EnvelopeKind::Empty, gzip: true, lines: 0 }
        );
    }

    #[test]
    fn json_wrapped_lines_with_escapes_and_concatenation() {
        let (r, lines) = lines_of(br#"{"message":"a \"b\""} {"message":"c"}"#);
        assert_eq!(r.unwrap().lines, 2);
        assert_eq!(lines[0].0, "a \"b\"");
        assert_eq!(lines[1].0, "c");
    }

    #[test]
    fn cloudwatch_payloads_carry_context_and_control_messages_yield_nothing() {
        let data = br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"eni-1-all","subscriptionFilters":["f"],"logEvents":[{"id":"1","timestamp":1,"message":"x y"},{"id":"2","timestamp":1,"message":"z"}]}"#;
        let (r, lines) = lines_of(&gzip(data));
        assert_eq!(
            r.unwrap(),
            Decoded { kind: EnvelopeKind::CloudWatchData, gzip: true, lines: 2 }
        );
        assert_eq!(lines[0], ("x y".to_string(), Some("eni-1-all".to_string())));
        let control = br#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#;
        let (r, lines) = lines_of(&gzip(control));
        assert_eq!(r.unwrap().kind, EnvelopeKind::CloudWatchControl);
        assert!(lines.is_empty());
    }

    #[test]
    fn bad_envelopes_are_rejected_with_reasons() {
        let cases: [(Vec<u8>, RejectReason); 6] = [
            (vec![0x1f, 0x8b, 1, 2, 3], RejectReason::InvalidGzip),
            (gzip(&gzip(b"x")), RejectReason::NestedGzip),
            (b"{\"message\":".to_vec(), RejectReason::InvalidJson),
            (b"{\"other\":1}".to_vec(), RejectReason::UnrecognisedJson),
            (b"{\"messageType\":\"PING\"}".to_vec(), RejectReason::UnknownMessageType),
            (b"{\"messageType\":\"DATA_MESSAGE\"}".to_vec(), RejectReason::UnrecognisedJson),
        ];
        for (record, reason) in cases {
            assert_eq!(lines_of(&record).0.unwrap_err().reason, reason);
        }
    }

    #[test]
    fn decompression_is_capped() {
        let big = gzip(&vec![b'a'; 10_000]);
        let r = EnvelopeDecoder::new(9_999).decode(&big, |_, _| {});
        assert_eq!(r.unwrap_err().reason, RejectReason::DecompressedTooLarge);
        let r = EnvelopeDecoder::new(10_000).decode(&big, |_, _| {});
        assert_eq!(r.unwrap().lines, 1);
    }
}
