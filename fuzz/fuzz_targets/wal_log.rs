//! The write-ahead log decoder: whole entries from a log's bytes (length, CRC-32, payload) and,
//! since a random input rarely passes the CRC, the payload decoder on its own. Never panics,
//! never reads past the input, and never claims more whole bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpcflowd::serve::wal::{decode_entries, decode_payload};

fuzz_target!(|data: &[u8]| {
    let (_, whole) = decode_entries(data);
    assert!(whole <= data.len());
    let _ = decode_payload(data);
});
