//! Window figures: `cargo bench --bench window`. Results and commands: BENCHMARKS.md.
//!
//! - `close/10k_interfaces_x_1k_sources`: building every snapshot of one window for 10,000
//!   interfaces with 1,000 sources each, on one thread (the engine spreads this over shards).
//! - `memory`: live heap bytes per tracked (interface, source) key in a pane, measured with a
//!   counting allocator, printed before the timings.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use vpcflowd::decode::{Action, LogStatus};
use vpcflowd::window::TopN;
use vpcflowd::window::diagnosis::Detail;
use vpcflowd::window::direction::{Basis, Direction};
use vpcflowd::window::event::FlowEvent;
use vpcflowd::window::pane::{Caps, InterfacePanes};
use vpcflowd::window::snapshot::{BuildOptions, SnapshotKey, build};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn event(iface: u32, src: u32, flow: u16) -> FlowEvent {
    FlowEvent {
        interface: iface,
        pane: 1,
        late: false,
        status: Some(LogStatus::Ok),
        action: Some(if src.is_multiple_of(10) { Action::Reject } else { Action::Accept }),
        direction: Direction::Ingress,
        basis: Basis::Inferred,
        srcaddr: Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + src))),
        dstaddr: Some(IpAddr::V4(Ipv4Addr::from(0xac10_0000 + iface))),
        via: None,
        local: Some(IpAddr::V4(Ipv4Addr::from(0xac10_0000 + iface))),
        srcport: Some(40000 + flow),
        dstport: Some(443),
        protocol: Some(6),
        syn_only: None,
        packets: 1 + u64::from(src % 7),
        bytes: 100 + u64::from(src % 1000) * 10,
        account: None,
        region: None,
    }
}

fn states(interfaces: u32, sources: u32, flows: u16) -> Vec<InterfacePanes> {
    let caps = Caps { sources: 100_000, destinations: 100_000, flows: 64 };
    (0..interfaces)
        .map(|i| {
            let mut st = InterfacePanes::default();
            for s in 0..sources {
                for f in 0..flows {
                    st.pane_mut(1, &caps).apply(&event(i, s, f), &caps, true);
                }
            }
            st
        })
        .collect()
}

fn memory() {
    for (interfaces, sources, flows) in [(100u32, 10_000u32, 1u16), (100, 10_000, 4)] {
        let before = LIVE.load(Ordering::Relaxed);
        let s = states(interfaces, sources, flows);
        let after = LIVE.load(Ordering::Relaxed);
        let keys = u64::from(interfaces) * u64::from(sources);
        println!(
            "memory: {interfaces} interfaces x {sources} sources x {flows} flow(s) each: {:.1} MiB live, {:.0} bytes per (interface, source) key in a pane",
            (after - before) as f64 / 1048576.0,
            (after - before) as f64 / keys as f64
        );
        black_box(s);
    }
}

fn close(c: &mut Criterion) {
    memory();
    let states = states(10_000, 1_000, 1);
    let top = TopN::default();
    let name: Arc<str> = Arc::from("eni-00000000000000000");
    let mut g = c.benchmark_group("close");
    g.sample_size(10);
    g.bench_function("10k_interfaces_x_1k_sources", |b| {
        b.iter(|| {
            let mut n = 0;
            for st in &states {
                let window = st.window(1, 5);
                let key = SnapshotKey {
                    window_start: 60,
                    window_end: 360,
                    interface_id: name.clone(),
                    account_id: None,
                    region: None,
                    labels: Default::default(),
                    revision: 0,
                };
                let options = BuildOptions {
                    top: &top,
                    detail: Detail::Always,
                    thresholds: &Default::default(),
                    baseline: None,
                };
                n += build(key, &window, &options).sources.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, close);
criterion_main!(benches);
