//! Property tests: render random records under random layouts, parse, compare with the model.

use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::Value as Json;
use vpcflowd::decode::{
    Field, FieldKind, Layout, LayoutSet, RecordJson, RejectReason, Value, parse_line,
};

/// The model of one field's value: its token and what parsing it must give.
#[derive(Debug, Clone)]
struct Cell {
    field: Field,
    /// `None` is written as `-`.
    value: Option<(String, ModelValue)>,
}

#[derive(Debug, Clone, PartialEq)]
enum ModelValue {
    Int(u64),
    Str(String),
    Addr(IpAddr),
}

fn value_strategy(kind: FieldKind) -> BoxedStrategy<(String, ModelValue)> {
    match kind {
        FieldKind::Integer { max } => prop_oneof![0..=max.min(1000), 0..=max, Just(max)]
            .prop_map(|n| (n.to_string(), ModelValue::Int(n)))
            .boxed(),
        FieldKind::Code { min, max } => {
            (min..=max).prop_map(|n| (n.to_string(), ModelValue::Int(n.into()))).boxed()
        }
        // Any text without ASCII spaces or controls, including non-ASCII, never a lone `-`.
        FieldKind::Text => "[^ \\x00-\\x1f\\x7f]{1,12}"
            .prop_filter("a lone dash is absence", |s| s != "-")
            .prop_map(|s| (s.clone(), ModelValue::Str(s)))
            .boxed(),
        FieldKind::Address => {
            any::<IpAddr>().prop_map(|a| (a.to_string(), ModelValue::Addr(a))).boxed()
        }
        FieldKind::Enum { values } => proptest::sample::select(values)
            .prop_map(|s| (s.to_string(), ModelValue::Str(s.to_string())))
            .boxed(),
    }
}

fn cell(field: Field) -> impl Strategy<Value = Cell> {
    proptest::option::weighted(0.8, value_strategy(field.kind()))
        .prop_map(move |value| Cell { field, value })
}

/// A random layout (a non-empty subset of all fields, shuffled) with a value for each field.
fn record() -> impl Strategy<Value = Vec<Cell>> {
    proptest::sample::subsequence(Field::ALL.to_vec(), 1..=Field::ALL.len())
        .prop_shuffle()
        .prop_flat_map(|fields| fields.into_iter().map(cell).collect::<Vec<_>>())
}

/// Joins tokens with runs of 1–3 spaces, with optional leading and trailing spaces.
fn render(cells: &[Cell], gaps: &[usize], lead: usize, trail: usize) -> String {
    let mut line = " ".repeat(lead);
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            line.push_str(&" ".repeat(gaps[i % gaps.len()]));
        }
        line.push_str(c.value.as_ref().map_or("-", |(t, _)| t));
    }
    line.push_str(&" ".repeat(trail));
    line
}

fn as_model(v: Value<'_>) -> ModelValue {
    match v {
        Value::Int(n) => ModelValue::Int(n),
        Value::Str(s) => ModelValue::Str(s.to_string()),
        Value::Addr(a) => ModelValue::Addr(a),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rendered_records_parse_back_to_the_model(
        cells in record(),
        gaps in proptest::collection::vec(1usize..=3, 1..8),
        lead in 0usize..2,
        trail in 0usize..2,
    ) {
        let layout = Layout::parse(
            &cells.iter().map(|c| format!("${{{}}}", c.field)).collect::<Vec<_>>().join(" "),
        ).unwrap();
        let set = LayoutSet::single(layout);
        let line = render(&cells, &gaps, lead, trail);
        let parsed = parse_line(&set, line.as_bytes()).unwrap();
        for &field in Field::ALL {
            let expected = cells
                .iter()
                .find(|c| c.field == field)
                .and_then(|c| c.value.as_ref().map(|(_, v)| v.clone()));
            prop_assert_eq!(parsed.record.get(field).map(as_model), expected, "{}", field);
        }
        // The JSON form: every layout field, integers as numbers, text as written, null for `-`.
        let json: Json = serde_json::to_value(RecordJson(&parsed)).unwrap();
        let object = json.as_object().unwrap();
        prop_assert_eq!(object.len(), cells.len());
        for c in &cells {
            let got = &object[c.field.name()];
            match &c.value {
                None => prop_assert!(got.is_null()),
                Some((token, ModelValue::Int(n))) => {
                    prop_assert_eq!(got.as_u64(), Some(*n), "{} {}", c.field, token)
                }
                Some((token, _)) => prop_assert_eq!(got.as_str(), Some(token.as_str())),
            }
        }
    }

    #[test]
    fn a_corrupted_integer_token_is_rejected_naming_its_field(
        cells in record(),
        junk in prop_oneof![
            Just("+1"), Just("-1"), Just("1.0"), Just("1e3"), Just("1,0"), Just("0x1"), Just("١")
        ],
        pick in any::<proptest::sample::Index>(),
    ) {
        let ints: Vec<usize> = cells
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.field.kind(), FieldKind::Integer { .. }))
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!ints.is_empty());
        let target = ints[pick.index(ints.len())];
        let mut corrupted = cells.clone();
        corrupted[target].value = Some((junk.to_string(), ModelValue::Int(0)));
        let set = LayoutSet::single(Layout::parse(
            &cells.iter().map(|c| c.field.name()).collect::<Vec<_>>().join(" "),
        ).unwrap());
        let line = render(&corrupted, &[1], 0, 0);
        // Earlier fields are valid, so the error is about the corrupted one.
        let err = parse_line(&set, line.as_bytes()).unwrap_err();
        prop_assert_eq!(err.reason, RejectReason::InvalidNumber);
        prop_assert_eq!(err.field(), Some(cells[target].field));
    }

    #[test]
    fn a_missing_or_extra_token_is_a_field_count_rejection(
        cells in record(),
        extra in any::<bool>(),
    ) {
        let set = LayoutSet::single(Layout::parse(
            &cells.iter().map(|c| c.field.name()).collect::<Vec<_>>().join(" "),
        ).unwrap());
        let mut line = render(&cells, &[1], 0, 0);
        if extra {
            line.push_str(" -");
        } else if cells.len() > 1 {
            line.truncate(line.rfind(' ').unwrap());
        } else {
            line.clear();
        }
        let err = parse_line(&set, line.as_bytes()).unwrap_err();
        let expected = if !extra && cells.len() == 1 { RejectReason::BlankLine } else { RejectReason::FieldCount };
        prop_assert_eq!(err.reason, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let set = LayoutSet::default();
        let _ = parse_line(&set, &bytes);
        let mut decoder = vpcflowd::decode::EnvelopeDecoder::default();
        let _ = decoder.decode(&bytes, |line, _| { let _ = parse_line(&set, line); });
    }
}
