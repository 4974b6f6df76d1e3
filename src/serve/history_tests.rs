use std::sync::Arc;

use super::*;
use crate::window::Snapshot;

/// A snapshot of `interface` at `start`, read from the JSON a snapshot writes.
fn snapshot(interface: &str, start: u64, bytes: u64) -> Arc<Snapshot> {
    let line = format!(
        r#"{{"window_start":{start},"window_end":{},"interface_id":"{interface}","account_id":null,"region":null,"packets":1,"bytes":{bytes},"flows":1,"rejected_flows":0,"rejected_packets":0,"rejected_bytes":0,"nodata_records":0,"skipdata_records":0,"late_records":0,"direction_basis":"off","local_addresses":[],"ingress":{{"packets":0,"bytes":0,"flows":0,"rejected_flows":0,"rejected_packets":0,"rejected_bytes":0}},"egress":{{"packets":0,"bytes":0,"flows":0,"rejected_flows":0,"rejected_packets":0,"rejected_bytes":0}},"unknown_direction":{{"packets":1,"bytes":{bytes},"flows":1,"rejected_flows":0,"rejected_packets":0,"rejected_bytes":0}},"sources":[],"other_sources":{{"count":0,"packets":0,"bytes":0,"flows":0}},"destinations":[],"other_destinations":{{"count":0,"packets":0,"bytes":0,"flows":0}},"protocols":[],"rejected_sources":[],"denied_outbound":[],"asymmetric_flows":[],"findings":[],"top_flows":[],"revision":0,"approximate":false,"approximation":{{"source_bytes_error":0,"destination_bytes_error":0,"flow_bytes_error":0,"evicted_sources":0,"evicted_destinations":0,"evicted_flows":0}}}}"#,
        start + 60
    );
    Arc::new(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")))
}

fn kept(store: &SnapshotStore) -> Vec<(String, u64)> {
    store.all().iter().map(|s| (s.interface_id.to_string(), s.window_start)).collect()
}

#[test]
fn windows_before_the_state_file_come_back_and_those_after_it_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SnapshotStore::new(10));
    let history = History::restore(dir.path(), 0, store.clone()).unwrap();
    for (i, start) in [60, 120].into_iter().enumerate() {
        let batch = vec![snapshot("eni-a", start, 10 + i as u64)];
        store.insert(batch.clone());
        history.append(&batch);
    }
    // The checkpoint of generation 1 covers both batches; one more closes after it.
    history.cut(2, 1, Duration::from_secs(1));
    history.covered(1);
    let after = vec![snapshot("eni-a", 180, 12)];
    store.insert(after.clone());
    history.append(&after);
    drop(history);

    let restored = Arc::new(SnapshotStore::new(10));
    let again = History::restore(dir.path(), 1, restored.clone()).unwrap();
    assert_eq!(kept(&restored), [("eni-a".into(), 60), ("eni-a".into(), 120)]);
    assert_eq!(again.stats.restored.load(Relaxed), 2);
    assert_eq!(again.generation(), 1);
    // From the older state file (its write failed, say), only what came before it.
    let older = Arc::new(SnapshotStore::new(10));
    History::restore(dir.path(), 0, older.clone()).unwrap();
    assert!(kept(&older).is_empty());
}

#[test]
fn a_grown_journal_folds_into_a_base_and_older_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SnapshotStore::new(3));
    let history = History::restore(dir.path(), 0, store.clone()).unwrap();
    let mut generation = 0;
    // Enough batches to pass the fold size, a checkpoint every ten.
    for start in 1..=2000u64 {
        let batch: Vec<_> =
            (0..20).map(|i| snapshot(&format!("eni-{i}"), start * 60, start)).collect();
        store.insert(batch.clone());
        history.append(&batch);
        if start % 10 == 0 {
            generation += 1;
            history.cut(start, generation, Duration::from_secs(1));
            history.covered(generation);
        }
    }
    let bases = generations(dir.path(), BASE);
    assert_eq!(bases.len(), 1, "older bases are removed: {bases:?}");
    assert!(generations(dir.path(), JOURNAL).iter().all(|g| *g >= bases[0]));
    let restored = Arc::new(SnapshotStore::new(3));
    History::restore(dir.path(), generation, restored.clone()).unwrap();
    assert_eq!(kept(&restored), kept(&store));
    assert_eq!(restored.all().iter().map(|s| s.bytes).max(), Some(2000));
}

#[test]
fn a_journal_cut_at_any_byte_of_its_tail_keeps_its_whole_entries() {
    let batches: Vec<Vec<Arc<Snapshot>>> =
        (1..=3).map(|i| vec![snapshot("eni-a", i * 60, i), snapshot("eni-b", i * 60, i)]).collect();
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    for b in &batches {
        bytes.extend(encode(b).unwrap());
        ends.push(bytes.len());
    }
    for cut in 0..=bytes.len() {
        let (read, used) = decode(&bytes[..cut]);
        let whole = ends.iter().filter(|e| **e <= cut).count();
        assert_eq!((read.len(), used), (whole, if whole == 0 { 0 } else { ends[whole - 1] }));
    }
    let mut flipped = bytes.clone();
    flipped[ends[0] + 10] ^= 1;
    assert_eq!(decode(&flipped).0.len(), 1, "a corrupt entry and what follows are cut");
}

#[test]
fn a_cut_waits_for_the_consumer_and_gives_up_after_its_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SnapshotStore::new(10));
    let history = Arc::new(History::restore(dir.path(), 0, store).unwrap());
    let late = history.clone();
    let consumer = std::thread::spawn(move || late.append(&[snapshot("eni-a", 60, 1)]));
    history.cut(1, 1, Duration::from_secs(60));
    consumer.join().unwrap();
    assert_eq!((history.stats.batches.load(Relaxed), history.stats.failures.load(Relaxed)), (1, 0));
    // Nothing will append a second batch: the cut gives up and counts it.
    history.cut(2, 2, Duration::from_millis(10));
    assert_eq!(history.stats.failures.load(Relaxed), 1);
    assert_eq!(history.generation(), 2);
}
