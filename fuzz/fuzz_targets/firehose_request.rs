//! The Firehose HTTP request path before the engine: body decoding (gzip under a cap) and the
//! JSON + base64 request decoder. Never panics; the cap holds; records split exactly.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use vpcflowd::source::firehose::{decode_body, decode_request};

const CAP: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else { return };
    let mut headers = HeaderMap::new();
    if flags & 1 == 1 {
        headers.insert("content-encoding", HeaderValue::from_static("gzip"));
    }
    let Ok(decoded) = decode_body(&headers, body, CAP) else { return };
    assert!(decoded.len() <= CAP);
    if let Ok(request) = decode_request(&decoded) {
        assert_eq!(request.records().count(), request.ends.len());
        assert_eq!(request.records().map(<[u8]>::len).sum::<usize>(), request.data.len());
    }
});
