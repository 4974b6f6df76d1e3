//! Scale-out: three `serve` replicas share an 8-shard kinesalite stream through a lease table
//! on moto's DynamoDB. One is killed with SIGKILL mid-stream; the others take its leases once
//! they expire; it comes back with its state directory and gets leases handed back. The sum of
//! every replica's snapshots equals `vpcflowd replay` over everything put.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::kinesis::{self as k, AWS_ENV};
use crate::common::serve::Server;
use crate::common::tools::{Kinesalite, Moto};
use serde_json::Value;
use vpcflowd::decode::kpl;
use vpcflowd::source::kinesis::Position;
use vpcflowd::source::kinesis::lease::LeaseTable;

const T0: u64 = 1_700_000_040;
const WINDOW: [&str; 6] = ["--window", "2m", "--slide", "1m", "--lateness", "2h"];
const SHARDS: usize = 8;

fn line(iface: u32, src: u32, t: u64, bytes: u64) -> String {
    format!(
        "2 123456789012 eni-{iface:017x} 10.1.{}.{} 172.16.0.1 40000 443 6 3 {bytes} {t} {} REJECT OK",
        src / 250,
        src % 250,
        t + 30
    )
}

/// Bare lines and KPL aggregates, keyed by interface (so an interface stays on one shard).
fn records(n: u32, t0: u64) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    for i in 0..n {
        let iface = i % 37;
        let key = format!("eni-{iface:017x}");
        let t = t0 + u64::from(i % 90);
        if i % 2 == 0 {
            let l = line(iface, i, t, 40 + u64::from(i % 7));
            out.push((key, l.clone().into_bytes()));
            lines.push(l);
        } else {
            let ls: Vec<String> = (0..2).map(|j| line(iface, i * 2 + j, t, 9)).collect();
            let refs: Vec<&[u8]> = ls.iter().map(|l| l.as_bytes()).collect();
            out.push((key.clone(), kpl::aggregate(&key, &refs)));
            lines.extend(ls);
        }
    }
    (out, lines)
}

struct Replica {
    id: String,
    dir: tempfile::TempDir,
}

impl Replica {
    fn start(&self, kinesis: &str, moto: &str) -> Server {
        let dir = self.dir.path().to_str().unwrap();
        let mut args = vec![
            "--kinesis-stream",
            "shared",
            "--kinesis-endpoint",
            kinesis,
            "--lease-table",
            "vpcflowd-leases",
            "--lease-endpoint",
            moto,
            // Long enough that a replica slowed by a loaded 2-core CI machine still renews in
            // time (this test asserts that no live replica loses a lease; at 2 s, with the
            // test's own polling taking most of a core, one sometimes did); a SIGKILLed one's
            // leases are taken this long after its last renewal.
            "--lease-duration",
            "6s",
            "--replica-id",
            &self.id,
            "--state-dir",
            dir,
            // Each checkpoint is a lease-table transaction: three replicas committing every
            // 300 ms kept moto busy on a 2-core machine.
            "--checkpoint-interval",
            "1s",
        ];
        args.extend_from_slice(&WINDOW);
        Server::start(&args, &AWS_ENV)
    }
}

async fn statuses(servers: &[&Server]) -> Vec<Value> {
    let mut out = Vec::new();
    for s in servers {
        out.push(s.status().await);
    }
    out
}

/// Polls every server's status until `done` holds for the set (fails after 90 s).
async fn wait_all(servers: &[&Server], what: &str, done: impl Fn(&[Value]) -> bool) {
    for _ in 0..1800 {
        if done(&statuses(servers).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}: {:#}", Value::Array(statuses(servers).await));
}

/// Shards `status`'s replica reads now.
fn reading(status: &Value, me: &str) -> usize {
    status["kinesis"]["shards"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["lease_owner"] == me && s["state"] == "reading").count())
        .unwrap_or(0)
}

fn counter(status: &Value, section: &str, name: &str) -> u64 {
    status[section][name].as_u64().unwrap_or(0)
}

/// (window_start, interface) → (packets, bytes, flows), summed.
fn sums(snapshots: &[Value]) -> BTreeMap<(u64, String), (u64, u64, u64)> {
    let mut out: BTreeMap<(u64, String), (u64, u64, u64)> = BTreeMap::new();
    for s in snapshots {
        let e = out
            .entry((
                s["window_start"].as_u64().unwrap(),
                s["interface_id"].as_str().unwrap().into(),
            ))
            .or_default();
        e.0 += s["packets"].as_u64().unwrap();
        e.1 += s["bytes"].as_u64().unwrap();
        e.2 += s["flows"].as_u64().unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_share_a_stream_and_survive_a_sigkill_with_exact_counts() {
    let emu = Kinesalite::start();
    let moto = Moto::start();
    let kin = k::kinesis(&emu.endpoint);
    k::create_stream(&kin, "shared", SHARDS as i32).await;
    let (first, mut all) = records(1600, T0);
    k::put(&kin, "shared", &first).await;

    let replicas: Vec<Replica> = (1..=3)
        .map(|i| Replica { id: format!("r{i}"), dir: tempfile::tempdir().unwrap() })
        .collect();
    let r1 = replicas[0].start(&emu.endpoint, &moto.endpoint);
    let r2 = replicas[1].start(&emu.endpoint, &moto.endpoint);
    let r3 = replicas[2].start(&emu.endpoint, &moto.endpoint);
    let n_first = all.len() as u64;
    wait_all(&[&r1, &r2, &r3], "balanced leases and the first part read", |s| {
        (0..3).all(|i| reading(&s[i], &format!("r{}", i + 1)) >= 2)
            && s.iter().map(|s| counter(s, "ingest", "records")).sum::<u64>() == n_first
    })
    .await;

    // Mid-stream: r2 dies while it reads the second part.
    let (second, lines) = records(4000, T0 + 20);
    all.extend(lines);
    let r2_before = counter(&r2.status().await, "ingest", "records");
    k::put(&kin, "shared", &second).await;
    wait_all(&[&r2], "r2 reading the second part", |s| {
        counter(&s[0], "ingest", "records") > r2_before
    })
    .await;
    let killed = std::process::Command::new("kill").args(["-KILL", &r2.pid().to_string()]).status();
    assert!(killed.unwrap().success());
    let (exit, r2_printed, _) = r2.wait();
    assert!(!exit.success());
    wait_all(&[&r1, &r3], "r2's leases taken over", |s| {
        reading(&s[0], "r1") + reading(&s[1], "r3") == SHARDS
    })
    .await;

    // r2 comes back with its state directory; the busiest replicas hand it leases.
    let r2 = replicas[1].start(&emu.endpoint, &moto.endpoint);
    wait_all(&[&r1, &r2, &r3], "r2 holding leases again", |s| {
        reading(&s[1], "r2") >= 2
            && reading(&s[0], "r1") + reading(&s[1], "r2") + reading(&s[2], "r3") == SHARDS
    })
    .await;
    let (third, lines) = records(800, T0 + 40);
    all.extend(lines);
    k::put(&kin, "shared", &third).await;

    // Every shard read to its end: a rejected marker at the end of each, seen by its reader.
    let open = k::open_shards(&kin, "shared").await;
    for (_, hash_key) in &open {
        k::put_to(&kin, "shared", hash_key, b"end-of-test marker".to_vec()).await;
    }
    let servers = [&r1, &r2, &r3];
    let rejected = |s: &Value| s["rejects"]["field_count"]["count"].as_u64().unwrap_or(0);
    wait_all(&servers, "the end markers", |s| s.iter().map(rejected).sum::<u64>() == SHARDS as u64)
        .await;
    // Then a record hours later on every shard closes every window of the data on every replica.
    for (_, hash_key) in &open {
        k::put_to(&kin, "shared", hash_key, line(999, 1, T0 + 10 * 3600, 1).into_bytes()).await;
    }
    wait_all(&servers, "every replica's windows to close", |s| {
        s.iter().all(|s| counter(s, "engine", "watermark") > T0 + 3600)
    })
    .await;

    let mut printed = r2_printed;
    let mut handed_off = 0;
    let mut taken = 0;
    for (i, server) in [r1, r2, r3].into_iter().enumerate() {
        let status = server.status().await;
        handed_off += counter(&status, "kinesis", "leases_handed_off");
        taken += counter(&status, "kinesis", "leases_taken");
        assert_eq!(counter(&status, "kinesis", "leases_lost"), 0, "r{}", i + 1);
        let (exit, p, stderr) = server.stop();
        assert!(exit.success(), "{stderr:#?}");
        printed.extend(p);
    }
    assert!(taken >= 2, "the dead replica's leases were taken: {taken}");
    assert!(handed_off >= 2, "leases were handed back to r2: {handed_off}");
    let data: Vec<Value> =
        printed.into_iter().filter(|s| s["window_start"].as_u64() < Some(T0 + 3600)).collect();
    let mut replay = vec!["replay"];
    replay.extend_from_slice(&WINDOW);
    let out = common::vpcflowd(&replay, (all.join("\n") + "\n").as_bytes());
    assert!(out.status.success());
    let expected = common::json_lines(&out.stdout);
    assert_eq!(sums(&data), sums(&expected), "no record missed or counted twice");
}

fn lease_table(moto: &Moto, name: &str) -> LeaseTable {
    LeaseTable {
        client: aws_sdk_dynamodb::Client::new(&common::tools::sdk_config(&moto.endpoint)),
        table: name.into(),
        stream: "shared".into(),
    }
}

/// The renewer on its own: it keeps a held lease's counter moving, plans a handover when
/// another replica asks, leaves a lease being handed over to the commit that transfers it,
/// and forgets a lease taken from it (counting what was uncommitted, and a batch applied after
/// the loss).
#[tokio::test(flavor = "multi_thread")]
async fn the_renewer_renews_hands_over_and_notices_a_lost_lease() {
    use std::sync::Arc;
    use vpcflowd::source::kinesis::renewer::{Renewal, Renewer};
    use vpcflowd::source::kinesis::{KinesisStatus, LeaseBook, ShardKey};

    let moto = Moto::start();
    let table = lease_table(&moto, "renewals");
    let status = Arc::new(KinesisStatus::default());
    let tables = BTreeMap::from([(Arc::from("shared"), table.clone())]);
    let book = Arc::new(LeaseBook::open("r1".into(), tables, status.clone()).await.unwrap());
    let lease = |shard: &'static str| {
        let table = table.clone();
        async move { table.scan().await.unwrap().into_iter().find(|l| l.shard == shard).unwrap() }
    };
    for shard in ["s-asked", "s-lost"] {
        table.create(shard, &[], &Position::TrimHorizon).await.unwrap();
        let taken = table.take(&lease(shard).await, "r1").await.unwrap().unwrap();
        book.hold(&ShardKey::new("shared", shard), taken.checkpoint);
    }
    let (asked, lost) = (ShardKey::new("shared", "s-asked"), ShardKey::new("shared", "s-lost"));
    let seq = Position::After("49000000000000000000000000000000000000000000000000000001".into());
    book.applied(&lost, 7, &seq);

    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    async fn next(events: &mut tokio::sync::mpsc::UnboundedReceiver<Renewal>) -> Option<Renewal> {
        let wait = tokio::time::timeout(Duration::from_secs(30), events.recv());
        wait.await.expect("no renewal event within 30 s")
    }
    let renewer = Renewer {
        book: book.clone(),
        table: table.clone(),
        stream: "shared".into(),
        status: status.clone(),
        every: Duration::from_millis(50),
        events: events_tx,
        stop: tokio_util::sync::CancellationToken::new(),
    };
    let stop = renewer.stop.clone();
    let running = tokio::spawn(renewer.run());
    // Waits until the table shows `shard` renewed `times` more times (fails after 5 s).
    let renewed = |shard: &'static str, times: u64| async move {
        let from = lease(shard).await.counter;
        for _ in 0..500 {
            if lease(shard).await.counter >= from + times {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{shard} was not renewed {times} times");
    };
    // Takes `shard` for r2, trying until no renewal moves its counter in between.
    let take_for_r2 = |shard: &'static str| {
        let table = table.clone();
        async move { while table.take(&lease(shard).await, "r2").await.unwrap().is_none() {} }
    };

    // Renewals: both counters move (the table says so, not the renewer).
    renewed("s-asked", 2).await;
    renewed("s-lost", 2).await;

    // r2 asks for one: the renewer plans the transfer and tells the coordinator, once.
    assert!(table.request_handoff(&lease("s-asked").await, "r2").await.unwrap());
    assert_eq!(next(&mut events).await, Some(Renewal::HandOver(asked.clone())));
    assert!(book.held("shared").contains(&(asked.clone(), true)));

    // The transfer's commit changes the owner while a renewal is on its way (here r2 takes
    // it, as that commit would have given it): a handover, not a loss. The renewer leaves it
    // to the commit, which forgets it (or counts it lost if the write finds it taken).
    take_for_r2("s-asked").await;
    // Three more renewals of the other lease: the second of those rounds started after the
    // take, and the third after the second had handled every answer.
    renewed("s-lost", 3).await;
    assert!(events.try_recv().is_err(), "a lease being handed over was reported");
    assert!(book.held("shared").contains(&(asked.clone(), true)));

    // r2 takes the other (as if r1's renewals had stopped): r1 forgets it and reports the loss.
    take_for_r2("s-lost").await;
    assert_eq!(next(&mut events).await, Some(Renewal::Lost(lost.clone())));
    assert!(!book.holds(&lost));
    let counters = &status.counters;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(load(&counters.leases_lost), 1, "only s-lost is lost");
    assert_eq!(load(&counters.lost_uncommitted_records), 7);
    // A batch the pipeline applied after checking `holds` just before the loss: its records
    // will be read again by r2, so they count as lost uncommitted records too.
    book.applied(&lost, 5, &seq);
    assert_eq!(load(&counters.lost_uncommitted_records), 12);
    assert_eq!(lease("s-lost").await.owner.as_deref(), Some("r2"));

    stop.cancel();
    running.await.unwrap();
    // Nothing else came, and each loss or departure was noted once (the coordinator's check
    // around its scans).
    assert!(events.try_recv().is_err());
    assert_eq!(book.departures(), 1);
}
