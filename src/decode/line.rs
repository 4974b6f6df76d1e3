//! Line parsing reads one record line, under its layout, into a typed [`FlowRecord`].
//!
//! The parser borrows from the line and allocates nothing, on success or failure: a rejection
//! is a [`LineError`] that points into the line, and its message is only built when displayed.

use std::fmt;

use super::field::{DefaultRecord, Field, FlowRecord};
use super::layout::{DEFAULT_FIELDS, Layout, LayoutSet};
use super::reject::RejectReason;
use super::token::{FromToken, TokenError, Tokens, count_tokens, single_spaced};

/// A line that parsed: the record, the layout that read it, and the line's text.
#[derive(Debug, Clone, Copy)]
pub struct ParsedLine<'a, 'l> {
    pub record: FlowRecord<'a>,
    pub layout: &'l Layout,
    /// The line, without its trailing `\r` if it had one.
    pub text: &'a str,
}

/// A line that did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineError<'a> {
    pub reason: RejectReason,
    detail: Detail<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail<'a> {
    None,
    /// A byte position and the byte found there.
    Byte {
        at: usize,
        byte: u8,
    },
    /// The line's field count and the single layout's.
    Count {
        found: usize,
        expected: usize,
    },
    /// The line's field count, when no layout of the set has it.
    NoLayout {
        found: usize,
    },
    /// A field whose token did not parse.
    Token {
        field: Field,
        position: usize,
        token: &'a str,
    },
}

impl LineError<'_> {
    /// The field whose value was rejected, if the rejection is about one field.
    pub fn field(&self) -> Option<Field> {
        match self.detail {
            Detail::Token { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl fmt::Display for LineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail {
            Detail::None => write!(f, "{}", self.reason),
            Detail::Byte { at, byte } => match self.reason {
                RejectReason::ControlCharacter => {
                    write!(
                        f,
                        "control character 0x{byte:02x} at byte {at} (fields are separated by spaces only)"
                    )
                }
                _ => write!(f, "invalid UTF-8 at byte {at} (0x{byte:02x})"),
            },
            Detail::Count { found, expected } => {
                write!(f, "expected {expected} fields, found {found}")
            }
            Detail::NoLayout { found } => {
                write!(f, "no configured layout has {found} fields")
            }
            Detail::Token { field, position, token } => {
                let problem = match self.reason {
                    RejectReason::NumberOutOfRange => "is out of range",
                    _ => "is not valid",
                };
                write!(
                    f,
                    "field {position} ({field}): `{token}` {problem}: expected {}",
                    field.kind()
                )
            }
        }
    }
}

fn token_reason(e: TokenError) -> RejectReason {
    match e {
        TokenError::NotANumber => RejectReason::InvalidNumber,
        TokenError::OutOfRange => RejectReason::NumberOutOfRange,
        TokenError::NotAnAddress => RejectReason::InvalidAddress,
        TokenError::UnknownValue => RejectReason::InvalidEnumValue,
    }
}

/// Parses one record line (without its `\n`) under the set's layouts.
///
/// ```
/// use vpcflowd::decode::{parse_line, LayoutSet, Action};
/// let layouts = LayoutSet::default();
/// let line = b"2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";
/// let parsed = parse_line(&layouts, line).unwrap();
/// assert_eq!(parsed.record.bytes, Some(4249));
/// assert_eq!(parsed.record.action, Some(Action::Accept));
/// ```
#[inline]
pub fn parse_line<'a, 'l>(
    layouts: &'l LayoutSet,
    line: &'a [u8],
) -> Result<ParsedLine<'a, 'l>, LineError<'a>> {
    parse_line_with(layouts, line, |parsed| parsed.copied())
}

/// Parses a line as [`parse_line`] does, but hands the result to `then` by reference, for the hot
/// path. A record is nearly a kilobyte of optional fields; built in place here, it is never
/// copied, where returning it by value would copy it twice.
///
/// With several layouts the line is first read under the set's first one (the usual format;
/// for the default set, AWS's default VPC format), which costs nothing extra when it fits: a
/// successful parse has exactly that layout's field count. Only a line that fails under it has
/// its tokens counted, and is read again under the layout of its count (if another), so the
/// result is always that of the layout chosen by count.
#[inline]
pub fn parse_line_with<'a, 'l, R>(
    layouts: &'l LayoutSet,
    line: &'a [u8],
    then: impl FnOnce(Result<&ParsedLine<'a, 'l>, LineError<'a>>) -> R,
) -> R {
    let (first, guessed) = match layouts.only() {
        Some(layout) => (layout, false),
        None => (layouts.first(), true),
    };
    // A plain default-format line (nearly every line) is checked and split in one pass.
    let plain = if first.is_default_format() { split_plain(line) } else { None };
    let text = match plain {
        Some((_, text)) => text,
        None => match checked_text(line) {
            Ok(text) => text,
            Err(e) => return then(Err(e)),
        },
    };
    let mut parsed = ParsedLine { record: FlowRecord::default(), layout: first, text };
    let first_read = match plain {
        Some((spaces, _)) => parse_default_split(&mut parsed.record, text, &spaces),
        None => parse_tokens(&mut parsed.record, first, text),
    };
    let Err(e) = first_read else {
        return then(Ok(&parsed));
    };
    if !guessed {
        return then(Err(e));
    }
    let layout = match layout_by_count(layouts, text) {
        Ok(layout) if !std::ptr::eq(layout, first) => layout,
        Ok(_) => return then(Err(e)),
        Err(by_count) => return then(Err(by_count)),
    };
    let mut parsed = ParsedLine { record: FlowRecord::default(), layout, text };
    match parse_tokens(&mut parsed.record, layout, text) {
        Ok(()) => then(Ok(&parsed)),
        Err(e) => then(Err(e)),
    }
}

/// A plain default-format line, read: its fields and its text (without a trailing `\r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainLine<'a> {
    pub record: DefaultRecord<'a>,
    pub text: &'a str,
}

/// Reads the line nearly every flow log is made of by a shortcut: when `layouts` read the
/// default format first, a line of printable ASCII with its 14 tokens one space apart is read
/// into a [`DefaultRecord`], and no [`FlowRecord`] is built or cleared.
///
/// It returns `None` for every other line, and for such a line that does not parse; the caller
/// then takes [`parse_line_with`]. For any line this reads, [`parse_line_with`] gives the same
/// fields and text (the rest of its record absent), so callers may take either (a property
/// test checks that the two agree).
///
/// ```
/// use vpcflowd::decode::{LayoutSet, parse_plain_line};
/// let line = b"2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";
/// let plain = parse_plain_line(&LayoutSet::default(), line).unwrap();
/// assert_eq!(plain.record.bytes, Some(4249));
/// assert!(parse_plain_line(&LayoutSet::default(), b"2  123456789010 eni-1 - - - - - - - - - - NODATA").is_none());
/// ```
#[inline]
pub fn parse_plain_line<'a>(layouts: &LayoutSet, line: &'a [u8]) -> Option<PlainLine<'a>> {
    if !layouts.first().is_default_format() {
        return None;
    }
    let (spaces, text) = split_plain(line)?;
    let mut record = DefaultRecord::default();
    parse_plain_split(&mut record, text, &spaces).ok()?;
    Some(PlainLine { record, text })
}

/// Checks and splits a plain default-format line in one pass ([`single_spaced`]), returning where
/// its spaces are and its text without a trailing `\r`. It returns `None` for any other line.
#[inline]
fn split_plain(line: &[u8]) -> Option<([u16; DEFAULT_FIELDS.len() - 1], &str)> {
    let line = without_cr(line);
    let spaces = single_spaced::<{ DEFAULT_FIELDS.len() - 1 }>(line)?;
    // The line is printable ASCII, so this cannot fail; it is checked all the same (the crate has
    // no `unsafe`).
    Some((spaces, std::str::from_utf8(line).ok()?))
}

/// The line without a trailing `\r`.
#[inline]
fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Checks a line's bytes and returns the line as text, without a trailing `\r`.
#[inline]
fn checked_text(line: &[u8]) -> Result<&str, LineError<'_>> {
    let line = without_cr(line);
    if has_control(line) {
        let at = line.iter().position(|&b| b < 0x20 || b == 0x7f).unwrap_or(0);
        return Err(LineError {
            reason: RejectReason::ControlCharacter,
            detail: Detail::Byte { at, byte: line[at] },
        });
    }
    std::str::from_utf8(line).map_err(|e| LineError {
        reason: RejectReason::InvalidUtf8,
        detail: Detail::Byte { at: e.valid_up_to(), byte: line[e.valid_up_to()] },
    })
}

/// The layout whose field count the line has.
fn layout_by_count<'a, 'l>(
    layouts: &'l LayoutSet,
    text: &'a str,
) -> Result<&'l Layout, LineError<'a>> {
    let found = count_tokens(text);
    if found == 0 {
        return Err(blank());
    }
    layouts
        .for_count(found)
        .ok_or(LineError { reason: RejectReason::FieldCount, detail: Detail::NoLayout { found } })
}

/// Whether `line` holds an ASCII control character (below 0x20, or DEL). It checks eight bytes at
/// a time, because a byte loop does not vectorise.
#[inline]
fn has_control(line: &[u8]) -> bool {
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut chunks = line.chunks_exact(8);
    let mut found = 0u64;
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if x & HIGHS != 0 {
            // A byte from 0x80 up (UTF-8) is rare in flow logs, so the check goes byte by byte.
            return line.iter().any(|&b| b < 0x20 || b == 0x7f);
        }
        // Every byte is below 0x80, so no lane carries into the next: b + 0x60 reaches 0x80
        // exactly when b >= 0x20, and b + 0x01 reaches 0x80 exactly when b == 0x7f.
        found |= (!x.wrapping_add(0x6060_6060_6060_6060) | x.wrapping_add(0x0101_0101_0101_0101))
            & HIGHS;
    }
    found != 0 || chunks.remainder().iter().any(|&b| b < 0x20 || b == 0x7f)
}

fn blank() -> LineError<'static> {
    LineError { reason: RejectReason::BlankLine, detail: Detail::None }
}

/// Reads the tokens of `text` into `record` (all absent) under `layout`.
#[inline]
fn parse_tokens<'a>(
    record: &mut FlowRecord<'a>,
    layout: &Layout,
    text: &'a str,
) -> Result<(), LineError<'a>> {
    if layout.is_default_format() {
        return parse_default_tokens(record, text);
    }
    parse_tokens_as(record, layout.fields(), text)
}

/// Reads the tokens of `text` into `record` as `fields`, dispatching on each field.
#[inline]
fn parse_tokens_as<'a>(
    record: &mut FlowRecord<'a>,
    fields: &[Field],
    text: &'a str,
) -> Result<(), LineError<'a>> {
    let mut tokens = Tokens::new(text);
    for (position, &field) in fields.iter().enumerate() {
        let Some(token) = tokens.next() else {
            if position == 0 {
                return Err(blank());
            }
            return Err(count_error(position, fields.len()));
        };
        record.set(field, token).map_err(|e| LineError {
            reason: token_reason(e),
            detail: Detail::Token { field, position: position + 1, token },
        })?;
    }
    let extra = tokens.count();
    if extra > 0 {
        return Err(count_error(fields.len() + extra, fields.len()));
    }
    Ok(())
}

/// Reads one token into its field: `-` leaves it absent.
#[inline(always)]
fn read_into<'a, T: FromToken<'a>>(slot: &mut Option<T>, token: &'a str) -> Result<(), TokenError> {
    if token != "-" {
        *slot = Some(T::from_token(token)?);
    }
    Ok(())
}

/// Reads the default format's fields, in its order, from `$token(position)`. Each field is known
/// at compile time, so each token goes straight to its field's parser and member instead of
/// through the table's dispatch on the field (a property test checks that the paths agree). A
/// token that does not parse is reported as the dispatch reports it.
macro_rules! read_default_fields {
    ($record:ident, $token:expr) => {
        read_default_fields!(@ $record, $token;
            0 version 1 account_id 2 interface_id 3 srcaddr 4 dstaddr 5 srcport 6 dstport
            7 protocol 8 packets 9 bytes 10 start 11 end 12 action 13 log_status)
    };
    (@ $record:ident, $token:expr; $($position:literal $member:ident)*) => {$(
        let token = $token($position)?;
        read_into(&mut $record.$member, token).map_err(|e| LineError {
            reason: token_reason(e),
            detail: Detail::Token {
                field: DEFAULT_FIELDS[$position],
                position: $position + 1,
                token,
            },
        })?;
    )*};
}

/// Reads the default format, the one nearly every flow log uses, as [`parse_tokens`] does: it
/// makes the same reads in the same order with the same errors, and [`Tokens`] finds the tokens.
#[inline]
fn parse_default_tokens<'a>(
    record: &mut FlowRecord<'a>,
    text: &'a str,
) -> Result<(), LineError<'a>> {
    const N: usize = DEFAULT_FIELDS.len();
    let mut tokens = Tokens::new(text);
    let mut next = |position: usize| {
        tokens.next().ok_or(if position == 0 { blank() } else { count_error(position, N) })
    };
    read_default_fields!(record, next);
    let extra = tokens.count();
    if extra > 0 {
        return Err(count_error(N + extra, N));
    }
    Ok(())
}

/// Defines a reader of a line that [`single_spaced`] has split, into a record of type `$record`
/// (any struct with the default format's members). The reader makes [`parse_default_tokens`]'
/// reads, taking exactly the format's number of tokens from between the given spaces. Both
/// records get their reader from this one body, so that neither pays for the other: filling a
/// `FlowRecord` from a `DefaultRecord` slows the general path (see BENCHMARKS.md).
macro_rules! default_split_reader {
    ($(#[$doc:meta])* $name:ident, $record:ident) => {
        $(#[$doc])*
        #[inline]
        fn $name<'a>(
            record: &mut $record<'a>,
            text: &'a str,
            spaces: &[u16; DEFAULT_FIELDS.len() - 1],
        ) -> Result<(), LineError<'a>> {
            let token = |position: usize| -> Result<&'a str, LineError<'a>> {
                let start = match position {
                    0 => 0,
                    p => usize::from(spaces[p - 1]) + 1,
                };
                let end = spaces.get(position).map_or(text.len(), |&s| usize::from(s));
                // Both ends are at ASCII spaces or the ends of the text, so they are char
                // boundaries.
                Ok(&text[start..end])
            };
            read_default_fields!(record, token);
            Ok(())
        }
    };
}

default_split_reader!(
    /// Reads a split line into the whole record, for the general path.
    parse_default_split,
    FlowRecord
);
default_split_reader!(
    /// Reads a split line into the default format's fields alone, for [`parse_plain_line`].
    parse_plain_split,
    DefaultRecord
);

fn count_error(found: usize, expected: usize) -> LineError<'static> {
    LineError { reason: RejectReason::FieldCount, detail: Detail::Count { found, expected } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::token::SINGLE_SPACED_MAX;
    use crate::decode::{Action, LogStatus};
    use proptest::prelude::{Just, Strategy, prop_oneof};

    fn default_set() -> LayoutSet {
        LayoutSet::single(Layout::default_format())
    }

    const OK: &str = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";

    fn reject(line: &str) -> (RejectReason, String) {
        let set = default_set();
        let e = parse_line(&set, line.as_bytes()).unwrap_err();
        (e.reason, e.to_string())
    }

    proptest::proptest! {
        #[test]
        fn control_characters_are_found_as_a_byte_loop_finds_them(
            line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            ascii in proptest::collection::vec(0x00u8..0x80, 0..40),
        ) {
            for l in [&line, &ascii] {
                let naive = l.iter().any(|&b| b < 0x20 || b == 0x7f);
                proptest::prop_assert_eq!(has_control(l), naive, "{:?}", l);
            }
        }
    }

    #[test]
    fn parses_the_default_format() {
        let set = default_set();
        let p = parse_line(&set, OK.as_bytes()).unwrap();
        let r = p.record;
        assert_eq!(r.version, Some(2));
        assert_eq!(r.account_id, Some("123456789010"));
        assert_eq!(r.srcaddr, Some("172.31.16.139".parse().unwrap()));
        assert_eq!((r.srcport, r.dstport, r.protocol), (Some(20641), Some(22), Some(6)));
        assert_eq!((r.packets, r.bytes), (Some(20), Some(4249)));
        assert_eq!((r.start, r.end), (Some(1418530010), Some(1418530070)));
        assert_eq!((r.action, r.log_status), (Some(Action::Accept), Some(LogStatus::Ok)));
        assert_eq!(r.vpc_id, None);
    }

    #[test]
    fn tolerates_space_runs_trailing_space_and_crlf() {
        let set = default_set();
        let messy = OK.replace(" 22 ", "  22   ") + " \r";
        let p = parse_line(&set, messy.as_bytes()).unwrap();
        assert_eq!(p.record, parse_line(&set, OK.as_bytes()).unwrap().record);
    }

    #[test]
    fn rejects_each_kind_of_malformed_line_with_a_reason() {
        let cases = [
            (OK.replacen(' ', "\t", 1), RejectReason::ControlCharacter),
            (OK.replace(" 20641 ", " +20641 "), RejectReason::InvalidNumber),
            (OK.replace(" 20641 ", " -5 "), RejectReason::InvalidNumber),
            (OK.replace(" 4249 ", " 4249.0 "), RejectReason::InvalidNumber),
            (OK.replace(" 4249 ", " 4.2e3 "), RejectReason::InvalidNumber),
            (OK.replace(" 4249 ", " 4,249 "), RejectReason::InvalidNumber),
            (OK.replace(" 20641 ", " 70000 "), RejectReason::NumberOutOfRange),
            (OK.replace(" 6 ", " 256 "), RejectReason::NumberOutOfRange),
            (OK.replace(" 4249 ", " 18446744073709551616 "), RejectReason::NumberOutOfRange),
            (OK.replace("ACCEPT", "accept"), RejectReason::InvalidEnumValue),
            (OK.replace(" OK", " Ok"), RejectReason::InvalidEnumValue),
            (OK.replace("172.31.16.139", "172.31.16.300"), RejectReason::InvalidAddress),
            (OK.replace(" OK", ""), RejectReason::FieldCount),
            (OK.to_string() + " extra", RejectReason::FieldCount),
            ("   ".to_string(), RejectReason::BlankLine),
            (String::new(), RejectReason::BlankLine),
        ];
        for (line, reason) in cases {
            assert_eq!(reject(&line).0, reason, "{line}");
        }
        let set = default_set();
        assert_eq!(parse_line(&set, b"2 \xff\xfe").unwrap_err().reason, RejectReason::InvalidUtf8);
    }

    #[test]
    fn messages_name_the_field_and_the_token() {
        let (_, msg) = reject(&OK.replace(" 20641 ", " +20641 "));
        assert_eq!(
            msg,
            "field 6 (srcport): `+20641` is not valid: expected an integer from 0 to 65535"
        );
        let (_, msg) = reject(&OK.replace(" OK", ""));
        assert_eq!(msg, "expected 14 fields, found 13");
        let (_, msg) = reject(&OK.replacen(' ', "\t", 1));
        assert!(msg.starts_with("control character 0x09 at byte 1"), "{msg}");
    }

    #[test]
    fn dash_is_absent_in_every_field() {
        let set = default_set();
        let line = "2 123456789010 eni-1 - - - - - - - 1431280876 1431280934 - NODATA";
        let r = parse_line(&set, line.as_bytes()).unwrap().record;
        assert_eq!(r.srcaddr, None);
        assert_eq!(r.packets, None);
        assert_eq!(r.action, None);
        assert_eq!(r.log_status, Some(LogStatus::NoData));
    }

    #[test]
    fn multi_layout_sets_route_by_count() {
        let set = LayoutSet::from_formats(&[
            "default",
            "instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr",
        ])
        .unwrap();
        let nat =
            "i-01234567890123456 eni-1235b8ca123456789 10.0.1.5 10.0.0.220 10.0.1.5 203.0.113.5";
        let p = parse_line(&set, nat.as_bytes()).unwrap();
        assert_eq!(p.layout.len(), 6);
        assert_eq!(p.record.pkt_dstaddr, Some("203.0.113.5".parse().unwrap()));
        assert_eq!(p.record.version, None);
        assert!(parse_line(&set, OK.as_bytes()).is_ok());
        let e = parse_line(&set, b"a b c").unwrap_err();
        assert_eq!(e.to_string(), "no configured layout has 3 fields");
    }

    /// The reference for `parse_line`: check the bytes, count the tokens, then read them under
    /// the layout of that count through the table's dispatch (no first-layout guess, no
    /// single-pass split, no default-format path).
    fn parse_by_count<'a, 'l>(
        layouts: &'l LayoutSet,
        line: &'a [u8],
    ) -> Result<ParsedLine<'a, 'l>, LineError<'a>> {
        let text = checked_text(line)?;
        let layout = match layouts.only() {
            Some(layout) => layout,
            None => layout_by_count(layouts, text)?,
        };
        let mut parsed = ParsedLine { record: FlowRecord::default(), layout, text };
        parse_tokens_as(&mut parsed.record, layout.fields(), text)?;
        Ok(parsed)
    }

    proptest::proptest! {
        /// The default format's own path reads every line exactly as the table's dispatch does:
        /// the same record, or the same error with the same detail.
        #[test]
        fn the_default_format_path_agrees_with_the_dispatch(
            tokens in prop_oneof![Just(14usize), 0usize..18].prop_flat_map(|n| {
                proptest::collection::vec(
                    proptest::sample::select(vec![
                        "2", "300", "123456789010", "eni-1", "10.0.0.1", "::1", "1.2.3", "443",
                        "6", "-", "+1", "ACCEPT", "REJECT", "OK", "NODATA", "ok", "x", "70000",
                        "1700000000", "18446744073709551616",
                    ]),
                    n,
                )
            }),
            spaces in "[ ]{1,2}",
            edge in "[ ]{0,2}",
        ) {
            let line = format!("{edge}{}{edge}", tokens.join(&spaces));
            let mut fast = FlowRecord::default();
            let mut table = FlowRecord::default();
            let got = parse_default_tokens(&mut fast, &line).map_err(|e| (e, e.to_string()));
            let want = parse_tokens_as(&mut table, &DEFAULT_FIELDS, &line)
                .map_err(|e| (e, e.to_string()));
            proptest::prop_assert_eq!(got, want, "{}", line);
            proptest::prop_assert_eq!(fast, table, "{}", line);
        }

        /// A plain line is split exactly where its spaces are; any other line (a byte that is
        /// not printable ASCII, a space at an end or beside another, another count, too long)
        /// is left to the general path.
        #[test]
        fn single_spaced_finds_exactly_the_spaces_of_plain_lines(
            line in proptest::collection::vec(
                prop_oneof![8 => Just(b'a'), 3 => Just(b' '), 1 => Just(b'~'), 1 => Just(b'!')],
                0..24,
            ),
            odd in proptest::option::weighted(
                0.3,
                (proptest::sample::select(vec![b'\t', 0x7f, 0xc3, 0x1f, 0x80, 0]), 0..24usize),
            ),
            long in proptest::bool::weighted(0.1),
        ) {
            let mut line = line;
            if let Some((byte, at)) = odd {
                line.insert(at.min(line.len()), byte);
            }
            if long {
                line = [line.as_slice(), &[b'a'; SINGLE_SPACED_MAX - 10]].concat();
            }
            let spaces: Vec<u16> =
                (0..line.len()).filter(|&i| line[i] == b' ').map(|i| i as u16).collect();
            let plain = (1..=SINGLE_SPACED_MAX).contains(&line.len())
                && line.iter().all(|&c| (0x20..0x7f).contains(&c))
                && line.first() != Some(&b' ')
                && line.last() != Some(&b' ')
                && !line.windows(2).any(|w| w == b"  ");
            let want = (plain && spaces.len() == 3).then(|| [spaces[0], spaces[1], spaces[2]]);
            proptest::prop_assert_eq!(single_spaced::<3>(&line), want, "{:?}", line);
            if want.is_some() {
                let text = std::str::from_utf8(&line).unwrap();
                proptest::prop_assert_eq!(Tokens::new(text).count(), 4);
            }
        }

        /// Neither the first-layout guess nor the default format's single-pass split changes a
        /// result, record or error. The lines have either layout's count or none, or are blank;
        /// they are valid or not, drawn from a pool of tokens that fit some fields and not others
        /// (control and non-ASCII bytes among them), have single or double spaces, and may have a
        /// leading space and a trailing `\r`.
        #[test]
        fn the_first_layout_guess_agrees_with_choosing_by_count(
            tokens in prop_oneof![Just(14usize), Just(6), 0usize..20].prop_flat_map(|n| {
                proptest::collection::vec(
                    proptest::sample::select(vec![
                        "2", "123456789010", "eni-1", "10.0.0.1", "::1", "443", "6", "-",
                        "ACCEPT", "OK", "NODATA", "x", "70000", "1700000000", "a\tb", "\u{7f}",
                        "é", "\u{1}", "2001:db8::7", "\r",
                    ]),
                    n,
                )
            }),
            spaces in "[ ]{1,2}",
            edge in "[ ]{0,1}",
            cr in "[\r]{0,1}",
        ) {
            let set = LayoutSet::from_formats(&[
                "default",
                "instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr",
            ])
            .unwrap();
            let line = format!("{edge}{}{cr}", tokens.join(&spaces));
            let custom_first = LayoutSet::from_formats(&[
                "instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr",
                "default",
            ])
            .unwrap();
            for set in [&set, &LayoutSet::default(), &default_set(), &custom_first] {
                let got = parse_line(set, line.as_bytes()).map(|p| (p.layout.len(), p.record));
                let want =
                    parse_by_count(set, line.as_bytes()).map(|p| (p.layout.len(), p.record));
                proptest::prop_assert_eq!(got, want, "{}", line);
                // The plain-line shortcut reads what the general path reads, and reads every
                // plain line of a set whose first layout is the default format.
                let plain = parse_plain_line(set, line.as_bytes());
                if let Some(p) = plain {
                    let mut record = FlowRecord::default();
                    p.record.fill(&mut record);
                    proptest::prop_assert_eq!(want, Ok((14, record)), "{}", line);
                    proptest::prop_assert_eq!(p.text, line.trim_end_matches('\r'));
                }
                let is_plain = !std::ptr::eq(set, &custom_first)
                    && single_spaced::<13>(without_cr(line.as_bytes())).is_some();
                let took = plain.is_some();
                proptest::prop_assert_eq!(took, is_plain && want.is_ok(), "{}", line);
            }
        }
    }
}
