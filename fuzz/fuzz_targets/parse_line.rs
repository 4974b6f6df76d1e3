//! Line parsing under several layouts: never panics, a line that parses renders as JSON with
//! one key per layout field, and a line the plain-line shortcut reads parses to the same fields
//! on the general path.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use vpcflowd::decode::{Field, FlowRecord, LayoutSet, RecordJson, parse_line, parse_plain_line};

static LAYOUTS: LazyLock<Vec<LayoutSet>> = LazyLock::new(|| {
    let all = Field::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(" ");
    vec![
        LayoutSet::default(),
        LayoutSet::from_formats(&["instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr"]).unwrap(),
        LayoutSet::from_formats(&["version vpc-id subnet-id instance-id interface-id account-id type srcaddr dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status"]).unwrap(),
        LayoutSet::from_formats(&[all.as_str()]).unwrap(),
        LayoutSet::from_formats(&["traffic-path encryption-status flow-direction sublocation-type resource-type"]).unwrap(),
    ]
});

fuzz_target!(|data: &[u8]| {
    let Some((&pick, line)) = data.split_first() else { return };
    let set = &LAYOUTS[usize::from(pick) % LAYOUTS.len()];
    let parsed = parse_line(set, line);
    if let Ok(parsed) = &parsed {
        let json = serde_json::to_value(RecordJson(parsed)).expect("a parsed line renders");
        assert_eq!(json.as_object().unwrap().len(), parsed.layout.len());
    }
    if let Some(plain) = parse_plain_line(set, line) {
        let parsed = parsed.expect("a line the shortcut reads parses");
        let mut record = FlowRecord::default();
        plain.record.fill(&mut record);
        assert_eq!(parsed.record, record);
        assert_eq!(parsed.text, plain.text);
    }
});
