//! Envelope decoding (gzip, JSON-wrapped lines, CloudWatch payloads, text): never panics, never
//! exceeds its decompression cap, and every line it yields goes through the line parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpcflowd::decode::{EnvelopeDecoder, LayoutSet, parse_line};

const CAP: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let set = LayoutSet::default();
    let mut decoder = EnvelopeDecoder::new(CAP);
    let mut lines = 0;
    let result = decoder.decode(data, |line, _ctx| {
        assert!(line.len() <= CAP.max(data.len()));
        lines += 1;
        let _ = parse_line(&set, line);
    });
    match result {
        Ok(d) => assert_eq!(d.lines, lines),
        Err(e) => assert_eq!(e.lines, lines),
    }
});
