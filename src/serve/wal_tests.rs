use super::*;
use crate::record::{ParsedRecords, RouteFields, RouteInput};

fn records(n: u64) -> ParsedRecords {
    let mut r = ParsedRecords::with_capacity(n as usize);
    for i in 0..n {
        let fields = RouteFields { bytes: Some(i), packets: Some(1), ..RouteFields::default() };
        assert!(r.push(&RouteInput { interface: Some("eni-1"), fields, ..RouteInput::default() }));
    }
    r
}

fn entry(i: u64) -> WalEntry {
    WalEntry {
        request_id: format!("req-{i}"),
        arrival_ms: 1_700_000_000_000 + i,
        records: if i % 3 == 2 {
            WalRecords::Raw {
                request: DecodedRequest {
                    request_id: format!("req-{i}"),
                    timestamp: Some(i),
                    data: b"2 1 eni-1 - - - - - - - 1 2 - NODATA".to_vec(),
                    ends: vec![36],
                },
                account: Some("123456789012".into()),
                region: None,
            }
        } else {
            WalRecords::Parsed(records(i + 1))
        },
    }
}

fn append_all(wal: &mut Wal, entries: &[WalEntry]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| {
            let records = match &e.records {
                WalRecords::Parsed(r) => WalRecordsRef::Parsed(r),
                WalRecords::Raw { request, account, region } => WalRecordsRef::Raw {
                    request,
                    account: account.as_deref(),
                    region: region.as_deref(),
                },
            };
            let r = WalEntryRef { request_id: &e.request_id, arrival_ms: e.arrival_ms, records };
            wal.append(&r).unwrap()
        })
        .collect()
}

#[test]
fn entries_read_back_as_written_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<WalEntry> = (0..6).map(entry).collect();
    let mut wal = Wal::open(dir.path(), 4).unwrap();
    append_all(&mut wal, &entries[..3]);
    assert!(wal.sync().unwrap());
    assert!(!wal.sync().unwrap(), "nothing new to sync");
    drop(wal);
    let mut wal = Wal::open(dir.path(), 4).unwrap();
    append_all(&mut wal, &entries[3..]);
    wal.sync().unwrap();
    let got = recover(dir.path(), 4).unwrap();
    assert_eq!((got.entries, got.cut_bytes), (entries, 0));
}

/// A crash can end the log at any byte of its last append: recovery keeps exactly the whole
/// entries before that byte and cuts the rest, and the log then takes appends again.
#[test]
fn a_log_cut_at_every_byte_of_its_tail_keeps_exactly_its_whole_entries() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<WalEntry> = (0..4).map(entry).collect();
    let mut wal = Wal::open(dir.path(), 1).unwrap();
    let sizes = append_all(&mut wal, &entries);
    wal.sync().unwrap();
    drop(wal);
    let full = std::fs::read(path_of(dir.path(), 1)).unwrap();
    let last_start = (sizes[..3].iter().sum::<u64>()) as usize;
    for cut in last_start..=full.len() {
        std::fs::write(path_of(dir.path(), 1), &full[..cut]).unwrap();
        let got = recover(dir.path(), 1).unwrap();
        let whole = if cut == full.len() { 4 } else { 3 };
        assert_eq!(got.entries, entries[..whole], "cut at {cut}");
        assert_eq!(got.cut_bytes as usize, cut - if whole == 4 { full.len() } else { last_start });
        assert_eq!(
            std::fs::metadata(path_of(dir.path(), 1)).unwrap().len() as usize,
            cut - got.cut_bytes as usize
        );
    }
    // A flipped byte inside an entry cuts from that entry on.
    let mut bad = full.clone();
    bad[sizes[0] as usize + 10] ^= 0xff;
    std::fs::write(path_of(dir.path(), 1), &bad).unwrap();
    let got = recover(dir.path(), 1).unwrap();
    assert_eq!(got.entries, entries[..1]);
    let mut wal = Wal::open(dir.path(), 1).unwrap();
    append_all(&mut wal, &entries[1..2]);
    wal.sync().unwrap();
    assert_eq!(recover(dir.path(), 1).unwrap().entries, entries[..2]);
}

#[test]
fn rotating_starts_the_next_log_and_removes_the_covered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), 2).unwrap();
    append_all(&mut wal, &[entry(0)]);
    wal.rotate(3).unwrap();
    assert!(!path_of(dir.path(), 2).exists());
    append_all(&mut wal, &[entry(1)]);
    wal.sync().unwrap();
    // A log newer than the restored state cannot be applied without its state: it goes.
    std::fs::write(path_of(dir.path(), 9), b"junk").unwrap();
    assert_eq!(recover(dir.path(), 3).unwrap().entries, [entry(1)]);
    assert!(!path_of(dir.path(), 9).exists());
    assert!(recover(dir.path(), 4).unwrap().entries.is_empty());
}
