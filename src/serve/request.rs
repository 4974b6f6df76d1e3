//! Firehose requests are decoded and parsed on the HTTP workers, so that the pipeline thread,
//! the one serial stage of ingest, only routes.
//!
//! A [`ParsedRequest`] holds the request's flow-log records as
//! [`ParsedRecords`] (fixed fields, strings in one arena), and its rejections with their
//! samples. Nothing of it is counted until the pipeline
//! applies it: a request answered 503 (queue full) and retried by Firehose must not count its
//! rejections twice.
//!
//! [`for_each_input`] is the one decode-and-parse loop: the HTTP workers parse requests
//! with it, and the pipeline routes with it what it still parses itself (Kinesis records,
//! requests too large to hold parsed).

use crate::decode::{
    EnvelopeDecoder, LayoutSet, LineContext, RejectReason, parse_line_with, parse_plain_line,
};
use crate::record::{ParsedRecords, RouteInput};
use crate::source::firehose::DecodedRequest;
use crate::window::engine::RouteError;

/// A line as routing reads it, or why a line (or a whole record) was refused.
pub(crate) type Parsed<'r, 'a> =
    Result<&'r RouteInput<'a>, (RejectReason, &'r dyn std::fmt::Display)>;

/// Decodes one transport record and parses each of its lines under `layouts`, handing `each`
/// the line as routing reads it (`account` and `region` standing in where the envelope and the
/// record have none), or the refusal of a line or of the record, with that input's bytes.
pub(crate) fn for_each_input(
    decoder: &mut EnvelopeDecoder,
    layouts: &LayoutSet,
    record: &[u8],
    account: Option<&str>,
    region: Option<&str>,
    mut each: impl FnMut(Parsed<'_, '_>, &[u8]),
) {
    let decoded = decoder.decode(record, |line, ctx| {
        let ctx =
            LineContext { owner: ctx.owner.or(account), region: ctx.region.or(region), ..*ctx };
        // The shortcut reads what the general path would (decode::line's property tests check
        // this).
        if let Some(plain) = parse_plain_line(layouts, line) {
            return each(Ok(&RouteInput::of_default(&plain.record, &ctx)), line);
        }
        parse_line_with(layouts, line, |parsed| match parsed {
            Ok(parsed) => each(Ok(&RouteInput::of(&parsed.record, &ctx)), line),
            Err(e) => each(Err((e.reason, &e)), line),
        })
    });
    if let Err(e) = decoded {
        each(Err((e.reason, &e.detail)), record);
    }
}

/// One rejected line or record, as the pipeline counts it: its reason, message and input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReject {
    pub reason: RejectReason,
    pub detail: String,
    pub input: Vec<u8>,
}

/// A request's records in order, ready to route, and its rejections.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    records: ParsedRecords,
    pub rejects: Vec<ParsedReject>,
}

impl ParsedRequest {
    /// Decodes and parses every record of `request` under `layouts`; `account` and `region`
    /// (the request's common attributes) stand in for records that lack them.
    ///
    /// Returns `None` when the records' lines come to more than `max_line_bytes`: gzip'd records
    /// (CloudWatch payloads) can expand far beyond the body, and a parsed record takes about
    /// the room of its line, so such a request is left to the pipeline, which parses it one
    /// line at a time.
    pub fn prepare(
        request: &DecodedRequest,
        layouts: &LayoutSet,
        account: Option<&str>,
        region: Option<&str>,
        max_line_bytes: usize,
    ) -> Option<ParsedRequest> {
        let mut out = ParsedRequest {
            records: ParsedRecords::with_capacity(request.ends.len()),
            ..ParsedRequest::default()
        };
        let mut decoder = EnvelopeDecoder::default();
        let mut line_bytes = 0usize;
        for record in request.records() {
            for_each_input(&mut decoder, layouts, record, account, region, |parsed, input| {
                line_bytes = line_bytes.saturating_add(input.len());
                // Past the limit the rest of this record is still parsed, and dropped.
                if line_bytes > max_line_bytes {
                    return;
                }
                match parsed {
                    Ok(route) => {
                        if !out.records.push(route) {
                            // The router's own count of these is taken when the request is
                            // applied.
                            let e = RouteError::MissingInterface;
                            out.reject(RejectReason::MissingInterface, &e, input);
                        }
                    }
                    Err((reason, detail)) => out.reject(reason, detail, input),
                }
            });
            if line_bytes > max_line_bytes {
                return None;
            }
        }
        Some(out)
    }

    fn reject(&mut self, reason: RejectReason, detail: &dyn std::fmt::Display, input: &[u8]) {
        self.rejects.push(ParsedReject {
            reason,
            detail: detail.to_string(),
            input: input.to_vec(),
        });
    }

    /// The records as the router reads them, in request order.
    pub fn inputs(&self) -> impl Iterator<Item = RouteInput<'_>> {
        self.records.inputs()
    }

    /// Calls `each` with every record ([`ParsedRecords::for_each_named`]).
    #[inline]
    pub fn for_each_named(&self, each: impl FnMut(crate::record::NamedRecord<'_>)) {
        self.records.for_each_named(each)
    }

    /// How many records are ready to route.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE_A: &str =
        "2 111111111111 eni-a 10.0.0.1 10.0.0.2 1 2 6 3 300 1700000000 1700000060 ACCEPT OK";
    const LINE_B: &str = "2 - eni-b 10.0.0.3 10.0.0.4 5 6 17 1 50 1700000001 1700000061 REJECT OK";

    fn request(records: &[&[u8]]) -> DecodedRequest {
        let mut r = DecodedRequest { request_id: "r".into(), ..DecodedRequest::default() };
        for record in records {
            r.data.extend_from_slice(record);
            r.ends.push(r.data.len());
        }
        r
    }

    #[test]
    fn records_keep_their_order_fields_and_strings_and_rejections_wait_to_be_counted() {
        let wrapped = format!(r#"{{"message":"{LINE_B}"}}"#);
        let no_interface = LINE_A.replace("eni-a", "-");
        let req = request(&[
            LINE_A.as_bytes(),
            b"not a flow log",
            wrapped.as_bytes(),
            LINE_A.as_bytes(),
            no_interface.as_bytes(),
            b"{broken json",
        ]);
        let p = ParsedRequest::prepare(
            &req,
            &LayoutSet::default(),
            Some("999"),
            Some("eu-west-1"),
            usize::MAX,
        )
        .unwrap();
        let inputs: Vec<RouteInput<'_>> = p.inputs().collect();
        let strings: Vec<_> = inputs.iter().map(|i| (i.interface, i.account, i.region)).collect();
        assert_eq!(
            strings,
            [
                (Some("eni-a"), Some("111111111111"), Some("eu-west-1")),
                // No account in the record: the request's common attribute stands in.
                (Some("eni-b"), Some("999"), Some("eu-west-1")),
                (Some("eni-a"), Some("111111111111"), Some("eu-west-1")),
            ]
        );
        let layouts = LayoutSet::default();
        let direct = crate::decode::parse_line(&layouts, LINE_B.as_bytes()).unwrap();
        let ctx =
            LineContext { owner: Some("999"), region: Some("eu-west-1"), ..LineContext::default() };
        assert_eq!(inputs[1], RouteInput::of(&direct.record, &ctx));
        let reasons: Vec<_> = p.rejects.iter().map(|r| (r.reason, r.input.clone())).collect();
        assert_eq!(
            reasons,
            [
                (RejectReason::FieldCount, b"not a flow log".to_vec()),
                (RejectReason::MissingInterface, no_interface.into_bytes()),
                (RejectReason::InvalidJson, b"{broken json".to_vec()),
            ]
        );
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn repeated_strings_are_stored_once() {
        let req = request(&[LINE_A.as_bytes(), LINE_A.as_bytes(), LINE_B.as_bytes()]);
        let p =
            ParsedRequest::prepare(&req, &LayoutSet::default(), None, None, usize::MAX).unwrap();
        // The arena holds eni-a and its account once, then eni-b; a record's own account wins
        // over none.
        assert_eq!(p.records.arena(), "eni-a111111111111eni-b");
        assert_eq!(p.inputs().nth(2).unwrap().account, None);
    }

    #[test]
    fn requests_whose_lines_outgrow_the_limit_are_left_to_the_pipeline() {
        let req = request(&[LINE_A.as_bytes(), LINE_B.as_bytes()]);
        let layouts = LayoutSet::default();
        let exact = LINE_A.len() + LINE_B.len();
        assert!(ParsedRequest::prepare(&req, &layouts, None, None, exact).is_some());
        assert!(ParsedRequest::prepare(&req, &layouts, None, None, exact - 1).is_none());
    }
}
