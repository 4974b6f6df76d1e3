//! KPL de-aggregation: never panics; a record without the magic is passed through whole; an
//! aggregate we packed unpacks to exactly what went in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpcflowd::decode::kpl;

fuzz_target!(|data: &[u8]| {
    let mut seen = Vec::new();
    match kpl::for_each_user_record(data, |r| seen.push(r.to_vec())) {
        Ok(n) => {
            assert_eq!(n, seen.len());
            if !kpl::is_aggregated(data) {
                assert_eq!(seen, [data.to_vec()]);
            }
        }
        Err(_) => assert!(kpl::is_aggregated(data) && seen.is_empty()),
    }
    // Round trip: the input split on 0xff as user records.
    let parts: Vec<&[u8]> = data.split(|b| *b == 0xff).collect();
    let packed = kpl::aggregate("k", &parts);
    let mut back = Vec::new();
    kpl::for_each_user_record(&packed, |r| back.push(r.to_vec())).unwrap();
    assert_eq!(back, parts.iter().map(|p| p.to_vec()).collect::<Vec<_>>());
});
