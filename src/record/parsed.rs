//! This module holds records parsed off the router's thread until the router takes them in order.
//!
//! The router is the engine's one sequencer, so every ingest path that wants more than one
//! core parses elsewhere and hands the router finished records: serve's HTTP workers (one
//! Firehose request each) and replay's parse pool (one chunk of a file each). A
//! [`ParsedRecords`] keeps each record as the fixed [`RouteFields`] routing reads, with its
//! strings (interface, account, region) copied into one text arena, so a batch of ten thousand
//! records is three allocations, not thirty thousand.

use std::ops::Range;

use super::route::{NamedRecord, RouteFields, RouteInput, RouteLabels};

/// One record's routing fields, with its strings as ranges of the batch's text arena.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedRecord {
    interface: Range<u32>,
    account: Option<Range<u32>>,
    region: Option<Range<u32>>,
    fields: RouteFields,
    /// The record's labels, by index into the batch's label list (most records have none).
    labels: Option<u32>,
}

/// Records in input order, ready to route.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ParsedRecords {
    records: Vec<ParsedRecord>,
    text: String,
    /// The distinct runs of labels, as ranges of the arena (see [`RouteLabels::as_array`]).
    labels: Vec<[Option<Range<u32>>; 6]>,
}

impl ParsedRecords {
    /// An empty batch with room for `records` records.
    pub fn with_capacity(records: usize) -> Self {
        ParsedRecords {
            records: Vec::with_capacity(records),
            text: String::new(),
            labels: Vec::new(),
        }
    }

    /// Keeps `input` for routing. An input that names no interface is refused (the call returns
    /// `false` and keeps nothing): the router would refuse it, and the caller counts that as a
    /// rejection.
    pub fn push(&mut self, input: &RouteInput<'_>) -> bool {
        let Some(interface) = input.interface else { return false };
        let last = self.records.last();
        let (last_interface, last_account, last_region) = match last {
            Some(r) => (Some(r.interface.clone()), r.account.clone(), r.region.clone()),
            None => (None, None, None),
        };
        let interface = self.keep(interface, last_interface);
        let account = input.account.map(|a| self.keep(a, last_account));
        let region = input.region.map(|r| self.keep(r, last_region));
        let labels = (!input.labels.is_empty()).then(|| self.keep_labels(&input.labels));
        let record = ParsedRecord { interface, account, region, fields: input.fields, labels };
        self.records.push(record);
        true
    }

    /// The index of `labels` in the label list: the last entry when it holds the same strings
    /// (an interface's records come in runs), else a new one.
    fn keep_labels(&mut self, labels: &RouteLabels<'_>) -> u32 {
        let wanted = labels.as_array();
        if let Some(last) = self.labels.last() {
            let same =
                last.iter().zip(wanted).all(|(kept, w)| kept.as_ref().map(|r| self.text(r)) == w);
            if same {
                return (self.labels.len() - 1) as u32;
            }
        }
        let kept = wanted.map(|w| w.map(|s| self.keep(s, None)));
        self.labels.push(kept);
        (self.labels.len() - 1) as u32
    }

    /// Copies `s` into the arena, or points at the previous record's copy of the same field
    /// when it is the same string (an interface's records come in runs; account and region
    /// rarely change).
    #[inline]
    fn keep(&mut self, s: &str, last: Option<Range<u32>>) -> Range<u32> {
        if let Some(r) = last
            && self.text.as_bytes().get(r.start as usize..r.end as usize) == Some(s.as_bytes())
        {
            return r;
        }
        let start = self.text.len();
        self.text.push_str(s);
        start as u32..(start + s.len()) as u32
    }

    fn text(&self, r: &Range<u32>) -> &str {
        &self.text[r.start as usize..r.end as usize]
    }

    /// The records as the router reads them, in input order.
    pub fn inputs(&self) -> impl Iterator<Item = RouteInput<'_>> {
        self.named_inputs().map(|(_, input)| input)
    }

    /// Yields [`ParsedRecords::inputs`] together with each record's interface, which every kept
    /// record names ([`ParsedRecords::push`]). `EventRouter::push_named` routes these without a
    /// refusal to handle.
    pub fn named_inputs(&self) -> impl Iterator<Item = (&str, RouteInput<'_>)> {
        self.records.iter().map(|r| {
            let interface = self.text(&r.interface);
            let input = RouteInput {
                interface: Some(interface),
                account: r.account.as_ref().map(|a| self.text(a)),
                region: r.region.as_ref().map(|g| self.text(g)),
                fields: r.fields,
                labels: r.labels.map_or_else(RouteLabels::default, |i| {
                    let kept = &self.labels[i as usize];
                    RouteLabels::from_array(
                        kept.each_ref().map(|r| r.as_ref().map(|r| self.text(r))),
                    )
                }),
            };
            (interface, input)
        })
    }

    /// Calls `each` with every record, in input order, as [`NamedRecord`]s that borrow the
    /// batch: nothing per record is copied (routing's hot path; `named_inputs` builds a
    /// [`RouteInput`] per record). Each distinct run of labels is resolved once per call.
    #[inline]
    pub fn for_each_named(&self, mut each: impl FnMut(NamedRecord<'_>)) {
        let resolved: Vec<RouteLabels<'_>> = self
            .labels
            .iter()
            .map(|kept| {
                RouteLabels::from_array(kept.each_ref().map(|r| r.as_ref().map(|r| self.text(r))))
            })
            .collect();
        for r in &self.records {
            each(NamedRecord {
                interface: self.text(&r.interface),
                account: r.account.as_ref().map(|a| self.text(a)),
                region: r.region.as_ref().map(|g| self.text(g)),
                fields: &r.fields,
                labels: r.labels.map_or(&RouteLabels::NONE, |i| &resolved[i as usize]),
            });
        }
    }

    /// The arena's text (for tests of what is stored once).
    pub fn arena(&self) -> &str {
        &self.text
    }

    /// How many records are ready to route.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.records.clear();
        self.text.clear();
        self.labels.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(interface: Option<&'a str>, account: Option<&'a str>) -> RouteInput<'a> {
        let fields = RouteFields { bytes: Some(7), ..RouteFields::default() };
        let labels = RouteLabels::default();
        RouteInput { interface, account, region: Some("eu-west-1"), fields, labels }
    }

    #[test]
    fn records_come_back_in_order_with_their_strings_stored_once() {
        let mut p = ParsedRecords::with_capacity(4);
        assert!(p.push(&input(Some("eni-a"), Some("111"))));
        assert!(p.push(&input(Some("eni-a"), Some("111"))));
        assert!(!p.push(&input(None, Some("111"))));
        assert!(p.push(&input(Some("eni-b"), None)));
        let got: Vec<_> = p.inputs().collect();
        assert_eq!(
            got,
            [
                input(Some("eni-a"), Some("111")),
                input(Some("eni-a"), Some("111")),
                input(Some("eni-b"), None)
            ]
        );
        assert_eq!(p.arena(), "eni-a111eu-west-1eni-b");
        p.clear();
        assert!(p.is_empty() && p.arena().is_empty());
    }
}
