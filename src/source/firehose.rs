//! This module implements the Amazon Data Firehose HTTP endpoint delivery protocol, as
//! `shared/reference` (section 3) describes it: what a request must look like, how its body is
//! read and decoded, and how every answer is shaped. The HTTP server that uses it lives in `serve`.
//!
//! - Only 200 is success for Firehose; 413 is permanent; every other status is retried with the
//!   same request id. So bad flow-log *lines* inside a good request are counted and answered
//!   200, and only an unreadable request (JSON, base64, gzip) is answered 400.
//! - The response is JSON `{"requestId", "timestamp"}` (milliseconds, a number), plus
//!   `"errorMessage"` on failure, with `Content-Type: application/json`.

use std::borrow::Cow;
use std::io::Read;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
// The base64 decoder is vectorised (`base64_simd` is already in the tree through the AWS SDK),
// because a scalar decoder takes a visible share of the server's CPU on the Firehose path (see
// BENCHMARKS.md).
use base64_simd::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

pub const REQUEST_ID: &str = "x-amz-firehose-request-id";
pub const ACCESS_KEY: &str = "x-amz-firehose-access-key";
pub const PROTOCOL_VERSION: &str = "x-amz-firehose-protocol-version";
pub const COMMON_ATTRIBUTES: &str = "x-amz-firehose-common-attributes";
pub const SOURCE_ARN: &str = "x-amz-firehose-source-arn";

/// Why a request was refused, and so its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The access key is missing or wrong (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The body is over a size limit (413: Firehose does not retry it).
    #[error("{0}")]
    TooLarge(String),
    /// The body cannot be read: its JSON, base64, gzip or protocol version is bad (400).
    #[error("{0}")]
    BadRequest(String),
    /// The request cannot be taken now: the queue is full, the server is shutting down, or the
    /// same request is in flight (503: Firehose retries).
    #[error("{0}")]
    Unavailable(&'static str),
    /// The body did not arrive within the body read timeout.
    #[error("the request body did not arrive within {0:?}")]
    SlowBody(std::time::Duration),
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            RequestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RequestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::SlowBody(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// The response body Firehose requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirehoseResponse {
    #[serde(rename = "requestId")]
    pub request_id: String,
    /// Milliseconds since the epoch, as a JSON number.
    pub timestamp: u64,
    #[serde(rename = "errorMessage", skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// Builds a Firehose-shaped response: a JSON body, `Content-Type: application/json` and a content
/// length.
pub fn respond(status: StatusCode, request_id: &str, error: Option<String>) -> Response {
    let body = FirehoseResponse {
        request_id: request_id.to_string(),
        timestamp: crate::clock::unix_millis(),
        // The spec caps it at 8192 characters.
        error_message: error.map(|e| e.chars().take(8192).collect()),
    };
    let json = serde_json::to_vec(&body).expect("a response serializes");
    let mut response = (status, json).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Whether the request's access key is one of `keys` (any key when `keys` is empty), compared
/// in constant time.
pub fn check_access_key(headers: &HeaderMap, keys: &[String]) -> Result<(), RequestError> {
    if keys.is_empty() {
        return Ok(());
    }
    let Some(given) = headers.get(ACCESS_KEY) else {
        return Err(RequestError::Unauthorized("missing X-Amz-Firehose-Access-Key"));
    };
    let given = given.as_bytes();
    // Compare against every key so that the time does not say which one matched.
    let mut ok = subtle::Choice::from(0);
    for key in keys {
        ok |= key.as_bytes().ct_eq(given);
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(RequestError::Unauthorized("wrong X-Amz-Firehose-Access-Key"))
    }
}

/// Refuses protocol versions other than 1.0 (a missing header is accepted: some senders omit it).
pub fn check_protocol_version(headers: &HeaderMap) -> Result<(), RequestError> {
    match headers.get(PROTOCOL_VERSION) {
        None => Ok(()),
        Some(v) if v.as_bytes() == b"1.0" => Ok(()),
        Some(v) => Err(RequestError::BadRequest(format!(
            "unsupported X-Amz-Firehose-Protocol-Version {:?}",
            String::from_utf8_lossy(v.as_bytes())
        ))),
    }
}

/// The request body after `Content-Encoding`, decompressed under `max_decompressed` bytes.
pub fn decode_body<'b>(
    headers: &HeaderMap,
    body: &'b [u8],
    max_decompressed: usize,
) -> Result<Cow<'b, [u8]>, RequestError> {
    let encoding = headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some(b"identity") => {
            if body.len() > max_decompressed {
                return Err(RequestError::TooLarge(format!("body over {max_decompressed} bytes")));
            }
            Ok(Cow::Borrowed(body))
        }
        Some(b"gzip") => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max_decompressed));
            // The body is streamed under the limit, so a gzip bomb stops at max_decompressed + 1
            // bytes.
            flate2::read::MultiGzDecoder::new(body)
                .take((max_decompressed as u64).saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| RequestError::BadRequest(format!("gzip body: {e}")))?;
            if out.len() > max_decompressed {
                return Err(RequestError::TooLarge(format!(
                    "body decompresses to more than {max_decompressed} bytes"
                )));
            }
            Ok(Cow::Owned(out))
        }
        Some(other) => Err(RequestError::BadRequest(format!(
            "unsupported Content-Encoding {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(rename = "requestId", borrow)]
    request_id: Cow<'a, str>,
    /// Milliseconds from Firehose (moto sends seconds); the value is only checked, never used
    /// for windows.
    #[serde(default)]
    timestamp: Option<serde_json::Number>,
    #[serde(borrow)]
    records: Vec<RecordData<'a>>,
}

#[derive(Deserialize)]
struct RecordData<'a> {
    #[serde(borrow)]
    data: Base64Text<'a>,
}

/// A record's `data` string as bytes, borrowed unless it has escapes. Read as bytes, the string
/// is not checked for UTF-8 by the JSON parser: the text must be base64, which the base64 decoder
/// checks byte by byte anyway, so a UTF-8 check would be wasted work.
struct Base64Text<'a>(Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for Base64Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Base64Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Base64Text(Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Base64Text(Cow::Owned(v.to_vec())))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(Base64Text(Cow::Owned(v)))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Base64Text(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Base64Text(Cow::Owned(v.as_bytes().to_vec())))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A request whose records are decoded from base64 into one buffer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecodedRequest {
    pub request_id: String,
    pub timestamp: Option<u64>,
    /// Every record's bytes, back to back.
    pub data: Vec<u8>,
    /// Where each record ends in `data`.
    pub ends: Vec<usize>,
}

impl DecodedRequest {
    /// The records' bytes.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let r = &self.data[start..end];
            start = end;
            r
        })
    }
}

/// The request id a response must echo when the body could not be read: the header's.
pub fn header_request_id(headers: &HeaderMap) -> String {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// Parses the (decompressed) JSON body and decodes every record from base64.
pub fn decode_request(body: &[u8]) -> Result<DecodedRequest, RequestError> {
    let parsed: Body<'_> = serde_json::from_slice(body)
        .map_err(|e| RequestError::BadRequest(format!("request body is not Firehose JSON: {e}")))?;
    let mut request = DecodedRequest {
        request_id: parsed.request_id.into_owned(),
        timestamp: parsed.timestamp.as_ref().and_then(serde_json::Number::as_u64),
        data: Vec::with_capacity(body.len() * 3 / 4),
        ends: Vec::with_capacity(parsed.records.len()),
    };
    for (i, record) in parsed.records.iter().enumerate() {
        BASE64.decode_append(&*record.data.0, &mut request.data).map_err(|e| {
            RequestError::BadRequest(format!("record {i}: data is not base64: {e}"))
        })?;
        request.ends.push(request.data.len());
    }
    Ok(request)
}

/// Reads the account and region from `X-Amz-Firehose-Common-Attributes`
/// (`{"commonAttributes": {"region": "…", "account-id": "…"}}`). The keys may be spelled `region`,
/// `aws_region`, `aws-region`; `account`, `account_id`, `account-id`, `accountId`, in any case.
pub fn common_attributes(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Attributes {
        #[serde(rename = "commonAttributes", default)]
        common: std::collections::HashMap<String, String>,
    }
    let Some(raw) = headers.get(COMMON_ATTRIBUTES) else { return (None, None) };
    let Ok(attrs) = serde_json::from_slice::<Attributes>(raw.as_bytes()) else {
        return (None, None);
    };
    let find = |names: &[&str]| {
        attrs
            .common
            .iter()
            .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    (
        find(&["account", "account_id", "account-id", "accountid"]),
        find(&["region", "aws_region", "aws-region"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn access_keys_are_checked() {
        let keys = vec!["secret".to_string(), "other".to_string()];
        assert!(check_access_key(&headers(&[]), &[]).is_ok());
        assert!(check_access_key(&headers(&[(ACCESS_KEY, "other")]), &keys).is_ok());
        assert_eq!(
            check_access_key(&headers(&[(ACCESS_KEY, "nope")]), &keys).unwrap_err().status(),
            401
        );
        assert_eq!(check_access_key(&headers(&[]), &keys).unwrap_err().status(), 401);
    }

    #[test]
    fn bodies_decode_with_limits() {
        let h = headers(&[("content-encoding", "gzip")]);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut e, &vec![b'x'; 100_000]).unwrap();
        let bomb = e.finish().unwrap();
        assert_eq!(decode_body(&h, &bomb, 99_999).unwrap_err().status(), 413);
        assert_eq!(decode_body(&h, &bomb, 100_000).unwrap().len(), 100_000);
        assert_eq!(decode_body(&h, b"not gzip", 10).unwrap_err().status(), 400);
        let br = headers(&[("content-encoding", "br")]);
        assert_eq!(decode_body(&br, b"x", 10).unwrap_err().status(), 400);
    }

    #[test]
    fn requests_decode_records_and_refuse_bad_base64() {
        let r = decode_request(br#"{"requestId":"a","timestamp":1700000000123,"records":[{"data":"aGk="},{"data":""},{"data":"eW8="}]}"#).unwrap();
        assert_eq!(r.request_id, "a");
        assert_eq!(r.timestamp, Some(1700000000123));
        assert_eq!(r.records().collect::<Vec<_>>(), [&b"hi"[..], b"", b"yo"]);
        // An escaped slash is still base64 (`/` = 63): "/w==" is 0xff.
        let r = decode_request(br#"{"requestId":"a","records":[{"data":"\/w=="}]}"#).unwrap();
        assert_eq!(r.records().collect::<Vec<_>>(), [&[0xff][..]]);
        // The data is a number, not a string.
        assert_eq!(
            decode_request(br#"{"requestId":"a","records":[{"data":1}]}"#).unwrap_err().status(),
            400
        );
        // Each of these is refused: invalid UTF-8 in the JSON string, junk, trailing bits set,
        // padding missing, and whitespace inside.
        assert_eq!(
            decode_request(b"{\"requestId\":\"a\",\"records\":[{\"data\":\"\xff\xfe==\"}]}")
                .unwrap_err()
                .status(),
            400
        );
        for bad in ["!!", "aGl=", "aGk", "aG k="] {
            let body = format!(r#"{{"requestId":"a","records":[{{"data":"{bad}"}}]}}"#);
            let e = decode_request(body.as_bytes()).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
        assert_eq!(decode_request(b"{").unwrap_err().status(), 400);
        assert_eq!(decode_request(br#"{"records":[]}"#).unwrap_err().status(), 400);
    }

    proptest::proptest! {
        /// The vectorised decoder accepts exactly what the `base64` crate's standard engine
        /// accepts (canonical padding, no stray trailing bits, no whitespace) and decodes it
        /// the same, on valid encodings of random bytes and on near-misses of them.
        #[test]
        fn base64_decodes_as_the_base64_crate_does(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            cut in 0usize..4,
            junk in "[A-Za-z0-9+/= \n!]{0,3}",
        ) {
            use base64::Engine;
            let reference = base64::engine::general_purpose::STANDARD;
            let valid = reference.encode(&bytes);
            let near = format!("{}{junk}", &valid[..valid.len().saturating_sub(cut)]);
            for text in [valid, near] {
                let mut ours = Vec::new();
                let ours = BASE64.decode_append(text.as_bytes(), &mut ours).map(|()| ours);
                proptest::prop_assert_eq!(ours.ok(), reference.decode(&text).ok(), "{}", text);
            }
        }
    }

    #[test]
    fn common_attributes_fill_account_and_region() {
        let h = headers(&[(
            COMMON_ATTRIBUTES,
            r#"{"commonAttributes":{"Region":"eu-west-1","account-id":"000123456789"}}"#,
        )]);
        assert_eq!(common_attributes(&h), (Some("000123456789".into()), Some("eu-west-1".into())));
        assert_eq!(common_attributes(&headers(&[(COMMON_ATTRIBUTES, "junk")])), (None, None));
    }

    #[test]
    fn responses_have_the_required_shape() {
        let r = respond(StatusCode::OK, "id-1", None);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
