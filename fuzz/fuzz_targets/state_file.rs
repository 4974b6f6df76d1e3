//! The state file decoder: the framed file (magic, version, length, CRC) and, since a random
//! input rarely passes the CRC, the MessagePack payload decoder on its own. Never panics and
//! never allocates without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpcflowd::serve::state_file::{StateFile, decode};

fuzz_target!(|data: &[u8]| {
    let _ = decode(data, std::path::Path::new("fuzz"));
    let _ = rmp_serde::from_slice::<StateFile>(data);
});
