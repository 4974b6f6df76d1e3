//! Proof that the hot path allocates nothing per record: a counting global allocator around
//! envelope decoding and line parsing of bare, JSON-wrapped and multi-layout input.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;

use vpcflowd::decode::{EnvelopeDecoder, LayoutSet, parse_line};

struct Counting;

thread_local! {
    // Counted per thread so that the test harness's own threads do not interfere.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const V5_FORMAT: &str = "${version} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${start} ${end} ${type} ${packets} ${bytes} ${account-id} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} ${region} ${az-id} ${sublocation-type} ${sublocation-id} ${action} ${tcp-flags} ${pkt-srcaddr} ${pkt-dstaddr} ${pkt-src-aws-service} ${pkt-dst-aws-service} ${traffic-path} ${flow-direction} ${log-status}";

fn lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "2 123456789010 eni-{i:017x} 10.0.{}.{} 2001:db8::{i:x} {} 443 6 {} {} 1700000000 1700000060 {} OK",
                i % 256,
                (i / 256) % 256,
                1024 + i % 60000,
                i % 100 + 1,
                (i % 100 + 1) * 60,
                if i % 7 == 0 { "REJECT" } else { "ACCEPT" }
            )
        })
        .collect()
}

#[test]
fn parsing_lines_allocates_nothing() {
    let set = LayoutSet::default();
    let input = lines(10_000);
    let mut bytes = 0u64;
    let n = allocations_during(|| {
        for l in &input {
            let p = parse_line(&set, l.as_bytes()).unwrap();
            bytes += p.record.bytes.unwrap();
        }
    });
    assert!(bytes > 0);
    assert_eq!(n, 0, "allocations while parsing 10,000 default-format lines");

    let v5 = LayoutSet::from_formats(&[V5_FORMAT]).unwrap();
    let line = "5 52.95.128.179 10.0.0.71 80 34210 6 1616729292 1616729349 IPv4 14 15044 123456789012 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-0c50d5961bcb2d47b eni-1235b8ca123456789 ap-southeast-2 apse2-az3 - - ACCEPT 19 52.95.128.179 10.0.0.71 S3 - - ingress OK";
    let n = allocations_during(|| {
        for _ in 0..10_000 {
            assert!(parse_line(&v5, line.as_bytes()).is_ok());
        }
    });
    assert_eq!(n, 0, "allocations while parsing 29-field v5 lines");
}

#[test]
fn rejecting_lines_allocates_nothing() {
    let set = LayoutSet::default();
    let bad = "2 123456789010 eni-1 10.0.0.1 10.0.0.2 +80 443 6 1 1 1 2 ACCEPT OK";
    let n = allocations_during(|| {
        for _ in 0..10_000 {
            assert!(parse_line(&set, bad.as_bytes()).is_err());
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn decoding_text_and_wrapped_envelopes_allocates_nothing() {
    let set = LayoutSet::default();
    let input = lines(1_000);
    let text = input.join("\n");
    let wrapped: Vec<String> = input.iter().map(|l| format!("{{\"message\":\"{l}\"}}")).collect();
    let mut decoder = EnvelopeDecoder::default();
    let mut records = 0;
    let n = allocations_during(|| {
        decoder
            .decode(text.as_bytes(), |line, _| {
                records += parse_line(&set, line).map_or(0, |_| 1);
            })
            .unwrap();
        for w in &wrapped {
            decoder
                .decode(w.as_bytes(), |line, _| {
                    records += parse_line(&set, line).map_or(0, |_| 1);
                })
                .unwrap();
        }
    });
    assert_eq!(records, 2_000);
    assert_eq!(n, 0, "allocations while decoding 1,000 text lines and 1,000 wrapped records");
}

#[test]
fn the_counter_sees_allocations() {
    let n = allocations_during(|| {
        std::hint::black_box(vec![1u8; 16]);
    });
    assert_eq!(n, 1);
}
