//! Tokenizing splits a record line into fields and turns one field's text into a typed value.
//!
//! AWS separates fields with one space and never writes an empty field (absence is `-`), but a
//! documented example carries a double space, so a run of spaces is one separator. Nothing else
//! separates fields: a tab or a comma stays inside the token and fails that token's parse.

use std::net::IpAddr;

use strum::VariantNames;

use super::enums::{
    Action, EncryptionStatus, FlowDirection, FlowType, LogStatus, ResourceType, SublocationType,
    TrafficPath,
};

/// Why one token did not parse as its field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// The token is not a plain run of ASCII digits: it holds a sign, a decimal point, an
    /// exponent, a comma or a letter.
    NotANumber,
    /// The token is digits only, but too large for the field's width.
    OutOfRange,
    /// The token is not an IPv4 or IPv6 address.
    NotAnAddress,
    /// The token is not one of the field's documented values (which are case-sensitive).
    UnknownValue,
}

/// A typed field value, as [`FlowRecord::get`](super::FlowRecord::get) hands it out.
///
/// Enumerations appear as their AWS spelling (`Str("ACCEPT")`) or, for the numeric codes
/// `traffic-path` and `encryption-status`, as `Int`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Int(u64),
    Str(&'a str),
    Addr(IpAddr),
}

/// What kind of value a field holds, and so what a valid token looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// ASCII digits, at most `max`.
    Integer { max: u64 },
    /// A numeric code from `min` to `max` (`traffic-path`, `encryption-status`).
    Code { min: u8, max: u8 },
    /// Any text without spaces (IDs, names, open sets such as `pkt-src-aws-service`).
    Text,
    /// An IPv4 or IPv6 address.
    Address,
    /// One of these spellings, case-sensitive.
    Enum { values: &'static [&'static str] },
}

impl FieldKind {
    /// Whether `vpcflowd parse` writes such a value as a JSON integer (else as a string).
    pub const fn is_integer(self) -> bool {
        matches!(self, FieldKind::Integer { .. } | FieldKind::Code { .. })
    }
}

impl std::fmt::Display for FieldKind {
    /// Writes what a valid token looks like, for rejection messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldKind::Integer { max } => write!(f, "an integer from 0 to {max}"),
            FieldKind::Code { min, max } => write!(f, "a code from {min} to {max}"),
            FieldKind::Text => f.write_str("text without spaces"),
            FieldKind::Address => f.write_str("an IPv4 or IPv6 address"),
            FieldKind::Enum { values } => write!(f, "one of {}", values.join(", ")),
        }
    }
}

/// A type a flow-log field can hold: how to parse it from its token and how to show it.
pub(crate) trait FromToken<'a>: Sized + Copy {
    /// The kind of value, for messages and for `parse`'s JSON.
    const KIND: FieldKind;
    /// Parses a token that is not `-`.
    fn from_token(token: &'a str) -> Result<Self, TokenError>;
    /// The value as a [`Value`].
    fn to_value(self) -> Value<'a>;
}

/// Parses an unsigned decimal integer made of ASCII digits only.
///
/// `str::parse::<u64>` accepts a leading `+`; flow logs never carry one, so it is junk here.
#[inline]
pub(crate) fn parse_decimal(token: &str) -> Result<u64, TokenError> {
    let bytes = token.as_bytes();
    if bytes.is_empty() {
        return Err(TokenError::NotANumber);
    }
    if bytes.len() <= 19 {
        // The value stays below 10^19 < 2^64, so the digit-by-digit loop has no overflow to
        // check for.
        let mut value: u64 = 0;
        for &b in bytes {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                return Err(TokenError::NotANumber);
            }
            value = value * 10 + u64::from(digit);
        }
        return Ok(value);
    }
    let mut value: u64 = 0;
    let mut overflow = false;
    for &b in bytes {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(TokenError::NotANumber);
        }
        // Keep scanning after an overflow so that `99999999999999999999x` reads as "not a
        // number" rather than "out of range".
        match value.checked_mul(10).and_then(|v| v.checked_add(u64::from(digit))) {
            Some(v) => value = v,
            None => overflow = true,
        }
    }
    if overflow { Err(TokenError::OutOfRange) } else { Ok(value) }
}

macro_rules! unsigned_from_token {
    ($($ty:ty),* $(,)?) => {$(
        impl<'a> FromToken<'a> for $ty {
            const KIND: FieldKind = FieldKind::Integer { max: <$ty>::MAX as u64 };
            #[inline]
            fn from_token(token: &'a str) -> Result<Self, TokenError> {
                <$ty>::try_from(parse_decimal(token)?).map_err(|_| TokenError::OutOfRange)
            }
            #[inline]
            fn to_value(self) -> Value<'a> {
                Value::Int(u64::from(self))
            }
        }
    )*};
}

unsigned_from_token!(u8, u16, u64);

impl<'a> FromToken<'a> for &'a str {
    const KIND: FieldKind = FieldKind::Text;
    #[inline]
    fn from_token(token: &'a str) -> Result<Self, TokenError> {
        Ok(token)
    }
    #[inline]
    fn to_value(self) -> Value<'a> {
        Value::Str(self)
    }
}

impl<'a> FromToken<'a> for IpAddr {
    const KIND: FieldKind = FieldKind::Address;
    #[inline]
    fn from_token(token: &'a str) -> Result<Self, TokenError> {
        if let Some(v4) = dotted_quad(token.as_bytes()) {
            return Ok(IpAddr::V4(v4));
        }
        if let Some(v6) = colon_hex(token.as_bytes()) {
            return Ok(IpAddr::V6(v6));
        }
        token.parse().map_err(|_| TokenError::NotAnAddress)
    }
    #[inline]
    fn to_value(self) -> Value<'a> {
        Value::Addr(self)
    }
}

/// Reads the common case of an address, a canonical dotted quad (`10.0.3.17`), in one pass. It
/// returns `None` for anything else (IPv6, and every malformed token), which then goes to the
/// standard library's parser, so the accepted set and the errors stay exactly the standard
/// library's (a property test checks that the two agree). The standard parser is general (it
/// backtracks through the IPv4 and IPv6 grammars) and so too slow for the hot path.
#[inline]
fn dotted_quad(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut value: u32 = 0;
        while let Some(&c) = b.get(i) {
            let d = c.wrapping_sub(b'0');
            if d > 9 || i - start == 3 {
                break;
            }
            value = value * 10 + u32::from(d);
            i += 1;
        }
        let digits = i - start;
        // One to three digits, no leading zero (as the standard parser demands), at most 255.
        if digits == 0 || (digits > 1 && b[start] == b'0') || value > 255 {
            return None;
        }
        *octet = value as u8;
    }
    (i == b.len()).then_some(std::net::Ipv4Addr::from(octets))
}

/// Reads the common case of an IPv6 address, hex groups around at most one `::`
/// (`2001:db8::7`), in one pass. It returns `None` for anything else (an embedded IPv4 suffix,
/// every malformed token), which then goes to the standard library's parser, so the accepted set
/// stays exactly the standard library's (a property test checks that the two agree). The
/// standard parser tries an IPv4 suffix at every group, which makes it slow for the hot path.
#[inline]
fn colon_hex(b: &[u8]) -> Option<std::net::Ipv6Addr> {
    let mut groups = [0u16; 8];
    let mut n = 0;
    // Where `::` stands in `groups`, if anywhere.
    let mut gap: Option<usize> = None;
    let mut i = 0;
    if b.starts_with(b"::") {
        gap = Some(0);
        i = 2;
    }
    while i < b.len() {
        let start = i;
        let mut value: u16 = 0;
        while i < b.len() && i - start < 4 {
            let Some(d) = char::from(b[i]).to_digit(16) else { break };
            value = value << 4 | d as u16;
            i += 1;
        }
        if i == start || n == 8 {
            return None;
        }
        groups[n] = value;
        n += 1;
        match b.get(i) {
            None => break,
            Some(b':') => i += 1,
            // A fifth hex digit, a `.` (an IPv4 suffix) or anything else is declined.
            Some(_) => return None,
        }
        if b.get(i) == Some(&b':') {
            if gap.is_some() {
                return None;
            }
            gap = Some(n);
            i += 1;
        } else if i == b.len() {
            return None; // The address ends in a single colon.
        }
    }
    let mut out = [0u16; 8];
    match gap {
        // `::` stands for at least one zero group.
        Some(at) if n <= 7 => {
            out[..at].copy_from_slice(&groups[..at]);
            out[8 - (n - at)..].copy_from_slice(&groups[at..n]);
        }
        None if n == 8 => out = groups,
        _ => return None,
    }
    Some(std::net::Ipv6Addr::from(out))
}

/// Implements `FromToken` for text enumerations: the token must be one of the AWS spellings, case
/// included.
macro_rules! text_enum_from_token {
    ($($ty:ty),* $(,)?) => {$(
        impl<'a> FromToken<'a> for $ty {
            const KIND: FieldKind = FieldKind::Enum { values: <$ty as VariantNames>::VARIANTS };
            #[inline]
            fn from_token(token: &'a str) -> Result<Self, TokenError> {
                token.parse().map_err(|_| TokenError::UnknownValue)
            }
            #[inline]
            fn to_value(self) -> Value<'a> {
                Value::Str(self.into())
            }
        }
    )*};
}

text_enum_from_token!(Action, LogStatus, FlowType, FlowDirection, SublocationType, ResourceType);

/// Implements `FromToken` for numeric-code enumerations, which are written as integers; only the
/// documented codes are valid.
macro_rules! code_enum_from_token {
    ($($ty:ty: $min:literal..=$max:literal),* $(,)?) => {$(
        impl<'a> FromToken<'a> for $ty {
            const KIND: FieldKind = FieldKind::Code { min: $min, max: $max };
            #[inline]
            fn from_token(token: &'a str) -> Result<Self, TokenError> {
                let code = parse_decimal(token)?;
                u8::try_from(code)
                    .ok()
                    .and_then(<$ty>::from_code)
                    .ok_or(TokenError::UnknownValue)
            }
            #[inline]
            fn to_value(self) -> Value<'a> {
                Value::Int(u64::from(self as u8))
            }
        }
    )*};
}

code_enum_from_token!(TrafficPath: 1..=8, EncryptionStatus: 0..=3);

/// Counts the tokens of a line (what [`Tokens`] would yield), branch-free so that it vectorises.
#[inline]
pub(crate) fn count_tokens(line: &str) -> usize {
    let b = line.as_bytes();
    let Some(&first) = b.first() else { return 0 };
    // A token starts at every non-space byte that follows a space (or starts the line). The
    // u32 lanes keep the vectorised sum narrow; a line would need 4 GiB to overflow it.
    let starts = b[1..]
        .iter()
        .zip(b)
        .fold(0u32, |n, (&c, &prev)| n + u32::from((prev == b' ') & (c != b' ')));
    usize::from(first != b' ') + starts as usize
}

/// The longest line [`single_spaced`] looks at: a default-format line is at most about 200
/// bytes (two full IPv6 addresses and 20-digit counters).
pub(crate) const SINGLE_SPACED_MAX: usize = 256;

/// Finds the `N` spaces of a plain line: a line of printable ASCII only (no control byte, no
/// DEL, nothing from 0x80 up), of at most [`SINGLE_SPACED_MAX`] bytes, whose `N + 1` tokens are
/// separated by single spaces with none at either end, which is how AWS writes every line. It
/// returns `None` for any other line, which the general path then reads (and rejects, if it must).
///
/// It makes one pass over the line, sixteen bytes at a time into bit masks (the compiler turns
/// each block's loop into a vector compare and a mask move), where the general path's control
/// scan, token count and token-by-token search take three passes and a branch per byte of a
/// token. For a plain line the tokens are exactly those of [`Tokens`] (a property test checks
/// this).
#[inline]
pub(crate) fn single_spaced<const N: usize>(line: &[u8]) -> Option<[u16; N]> {
    if line.is_empty() || line.len() > SINGLE_SPACED_MAX {
        return None;
    }
    let mut spaces = [0u16; N];
    let mut found = 0;
    let mut at = 0;
    while at < line.len() {
        let block: [u8; 16] = match line.get(at..at + 16) {
            Some(block) => block.try_into().expect("16 bytes"),
            None => {
                // The block is padded with a printable non-space byte, which adds no space and
                // nothing odd.
                let mut block = [b'x'; 16];
                block[..line.len() - at].copy_from_slice(&line[at..]);
                block
            }
        };
        let (mut mask, odd) = block_masks(&block);
        if odd != 0 {
            return None;
        }
        while mask != 0 {
            *spaces.get_mut(found)? = (at + mask.trailing_zeros() as usize) as u16;
            found += 1;
            mask &= mask - 1;
        }
        at += 16;
    }
    let (first, last) = (*spaces.first()?, *spaces.last()?);
    let apart = spaces.windows(2).all(|w| w[1] > w[0] + 1);
    (found == N && first > 0 && usize::from(last) + 1 < line.len() && apart).then_some(spaces)
}

/// Returns a block's spaces, and its bytes that are not printable ASCII (below 0x20, or from
/// 0x7f), as one bit per byte.
#[inline(always)]
fn block_masks(block: &[u8; 16]) -> (u16, u16) {
    let mut spaces = 0u16;
    let mut odd = 0u16;
    for (i, &c) in block.iter().enumerate() {
        spaces |= u16::from(c == b' ') << i;
        odd |= u16::from(c.wrapping_sub(0x20) > 0x5e) << i;
    }
    (spaces, odd)
}

/// Splits a line into tokens on runs of spaces (leading and trailing spaces included).
#[derive(Debug, Clone)]
pub(crate) struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    #[inline]
    pub(crate) fn new(line: &'a str) -> Self {
        Tokens { rest: line }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.rest.as_bytes();
        // The rest starts at the space that ended the last token, and AWS writes one space
        // between tokens: the next token nearly always starts one byte on.
        let start = match bytes {
            [b' ', second, ..] if *second != b' ' => 1,
            _ => bytes.iter().position(|&b| b != b' ')?,
        };
        let end = start + find_space(&bytes[start..]);
        // Both ends are at ASCII spaces or the ends of the string, so they are char boundaries.
        let token = &self.rest[start..end];
        self.rest = &self.rest[end..];
        Some(token)
    }
}

/// Returns the index of the first space in `b`, or `b.len()`. It reads eight bytes at a time
/// (SWAR): tokens are a few bytes long, too short for a SIMD search call to pay for itself, and
/// long enough that a byte loop would be the parser's largest cost.
#[inline]
fn find_space(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const SPACES: u64 = 0x2020_2020_2020_2020;
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes")) ^ SPACES;
        // The lowest set bit marks the first zero byte of x (a space in the chunk); bits above
        // it may be false positives, which trailing_zeros never looks at.
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return i + (zero.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + b[i..].iter().position(|&c| c == b' ').unwrap_or(b.len() - i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_accepts_only_ascii_digits() {
        assert_eq!(parse_decimal("0"), Ok(0));
        assert_eq!(parse_decimal("007"), Ok(7));
        assert_eq!(parse_decimal("18446744073709551615"), Ok(u64::MAX));
        for junk in ["+1", "-1", "1.0", "1e3", "1,000", " 1", "0x10", "١"] {
            assert_eq!(parse_decimal(junk), Err(TokenError::NotANumber), "{junk}");
        }
        assert_eq!(parse_decimal("18446744073709551616"), Err(TokenError::OutOfRange));
        assert_eq!(parse_decimal("99999999999999999999x"), Err(TokenError::NotANumber));
        assert_eq!(parse_decimal("9999999999999999999"), Ok(9_999_999_999_999_999_999));
        assert_eq!(parse_decimal("000000000000000000000000001"), Ok(1));
    }

    proptest::proptest! {
        /// Decimals read exactly as a checked digit-by-digit loop reads them, for numbers of
        /// every length and for junk (any byte, anywhere).
        #[test]
        fn decimals_agree_with_a_digit_loop(
            digits in "[0-9]{0,22}",
            junk in proptest::option::of((proptest::prelude::any::<u8>(), 0..22usize)),
        ) {
            let mut token = digits.into_bytes();
            if let Some((byte, at)) = junk {
                token.insert(at.min(token.len()), byte);
            }
            let Ok(token) = std::str::from_utf8(&token) else { return Ok(()) };
            let slow = if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
                Err(TokenError::NotANumber)
            } else {
                token.bytes().try_fold(0u64, |v, b| {
                    v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
                }).ok_or(TokenError::OutOfRange)
            };
            proptest::prop_assert_eq!(parse_decimal(token), slow, "{:?}", token);
        }
    }

    #[test]
    fn narrow_integers_check_their_range() {
        assert_eq!(u16::from_token("65535"), Ok(65535));
        assert_eq!(u16::from_token("65536"), Err(TokenError::OutOfRange));
        assert_eq!(u8::from_token("256"), Err(TokenError::OutOfRange));
    }

    #[test]
    fn enums_are_case_sensitive() {
        assert_eq!(Action::from_token("ACCEPT"), Ok(Action::Accept));
        assert_eq!(Action::from_token("accept"), Err(TokenError::UnknownValue));
        assert_eq!(FlowType::from_token("ipv4"), Err(TokenError::UnknownValue));
        assert_eq!(TrafficPath::from_token("8"), Ok(TrafficPath::InternetGateway));
        assert_eq!(TrafficPath::from_token("9"), Err(TokenError::UnknownValue));
        assert_eq!(TrafficPath::from_token("0"), Err(TokenError::UnknownValue));
        assert_eq!(EncryptionStatus::from_token("3"), Ok(EncryptionStatus::Both));
    }

    #[test]
    fn tokens_split_on_runs_of_spaces() {
        let t: Vec<_> = Tokens::new("  a b  c ").collect();
        assert_eq!(t, ["a", "b", "c"]);
        assert_eq!(Tokens::new("   ").count(), 0);
        assert_eq!(Tokens::new("a\tb").collect::<Vec<_>>(), ["a\tb"]);
        for line in ["", " ", "a", " a", "a ", "  a  b c  ", "ab cd", "-"] {
            assert_eq!(count_tokens(line), Tokens::new(line).count(), "{line:?}");
        }
    }

    #[test]
    fn addresses_parse_as_the_standard_library_parses_them() {
        for ok in [
            "0.0.0.0",
            "10.0.3.17",
            "255.255.255.255",
            "1.22.133.4",
            "::1",
            "2001:db8::7",
            "::",
            "1::",
            "2001:DB8:0:0:0:0:0:1",
            "::ffff:10.0.0.1",
            "64:ff9b::192.0.2.33",
        ] {
            assert_eq!(IpAddr::from_token(ok), Ok(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.",
            "1.2.3.256",
            "01.2.3.4",
            "1.2.3.4 ",
            "1..3.4",
            "1.2.3.0004",
            "a.b.c.d",
            ":",
            ":::",
            "1:",
            ":1",
            "1:::2",
            "1::2::3",
            "12345::",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::8",
            "1:2:3:4:5:6:7",
            "::g",
        ] {
            assert_eq!(IpAddr::from_token(bad), Err(TokenError::NotAnAddress), "{bad}");
        }
    }

    proptest::proptest! {
        /// The fast path accepts nothing the standard parser refuses and reads every address
        /// the same; what it declines, the standard parser decides.
        #[test]
        fn dotted_quads_agree_with_the_standard_parser(
            token in "[0-9.]{0,18}|([0-9]{1,4}\\.){3}[0-9]{1,4}|[0-9a-f:.]{0,20}"
        ) {
            let std: Result<std::net::Ipv4Addr, _> = token.parse();
            if let Some(fast) = dotted_quad(token.as_bytes()) {
                proptest::prop_assert_eq!(Ok(fast), std.clone());
            }
            let ours = IpAddr::from_token(&token).ok();
            proptest::prop_assert_eq!(ours, token.parse::<IpAddr>().ok());
        }

        /// The IPv6 fast path agrees with the standard parser in the same way, on groups of hex
        /// digits (sometimes five, sometimes empty), single and double colons, dots and junk, in
        /// random arrangements.
        #[test]
        fn colon_hex_agrees_with_the_standard_parser(
            token in "(([0-9a-fA-F]{0,5}|1\\.2\\.3\\.4)(:|::|\\.|g)?){0,10}|[0-9a-f:.]{0,24}"
        ) {
            let std: Result<std::net::Ipv6Addr, _> = token.parse();
            if let Some(fast) = colon_hex(token.as_bytes()) {
                proptest::prop_assert_eq!(Ok(fast), std.clone());
            }
            let ours = IpAddr::from_token(&token).ok();
            proptest::prop_assert_eq!(ours, token.parse::<IpAddr>().ok());
        }

        #[test]
        fn every_ipv6_address_round_trips_through_the_fast_path(groups: [u16; 8]) {
            let addr = std::net::Ipv6Addr::from(groups);
            // Display writes the canonical form (lowercase, the longest zero run as `::`, and
            // IPv4-mapped addresses with a dotted suffix, which the fast path declines).
            let text = addr.to_string();
            let fast = colon_hex(text.as_bytes());
            if text.contains('.') {
                proptest::prop_assert_eq!(fast, None);
            } else {
                proptest::prop_assert_eq!(fast, Some(addr));
            }
            let full = groups.map(|g| format!("{g:X}")).join(":");
            proptest::prop_assert_eq!(colon_hex(full.as_bytes()), Some(addr));
        }

        #[test]
        fn every_address_round_trips_through_the_fast_path(a: u8, b: u8, c: u8, d: u8) {
            let addr = std::net::Ipv4Addr::new(a, b, c, d);
            proptest::prop_assert_eq!(dotted_quad(addr.to_string().as_bytes()), Some(addr));
        }

        #[test]
        fn tokens_agree_with_split(line in "[a-c ]{0,40}|[ \\x21-\\x7e\\u{80}-\\u{2000}]{0,40}") {
            let ours: Vec<_> = Tokens::new(&line).collect();
            let std: Vec<_> = line.split(' ').filter(|t| !t.is_empty()).collect();
            proptest::prop_assert_eq!(&ours, &std);
            proptest::prop_assert_eq!(count_tokens(&line), std.len());
        }
    }
}
