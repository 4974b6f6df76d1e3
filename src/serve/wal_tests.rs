use super::*;

/// A Firehose body of `i % 4 + 1` records, gzip'd for odd `i`.
fn entry(i: u64) -> WalEntry {
    use base64::Engine;
    let records: Vec<String> = (0..=i % 4)
        .map(|k| {
            let line = format!("2 123456789012 eni-{i} 10.0.0.{k} 10.0.1.1 1 2 6 1 {i} 1700000000 1700000060 ACCEPT OK");
            let data = base64::engine::general_purpose::STANDARD.encode(line);
            format!("{{\"data\":\"{data}\"}}")
        })
        .collect();
    let request_id = format!("req-{i}");
    let json = format!(
        "{{\"requestId\":\"{request_id}\",\"timestamp\":1,\"records\":[{}]}}",
        records.join(",")
    );
    let (body, encoding) = if i % 2 == 1 {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(json.as_bytes()).unwrap();
        (gz.finish().unwrap(), Some("gzip".to_string()))
    } else {
        (json.into_bytes(), None)
    };
    WalEntry {
        request_id,
        arrival_ms: 1_700_000_000_000 + i,
        body,
        encoding,
        account: i.is_multiple_of(2).then(|| "111122223333".to_string()),
        region: i.is_multiple_of(3).then(|| "eu-west-1".to_string()),
    }
}

fn encoded(e: &WalEntry) -> Vec<u8> {
    let sent = SentRequest {
        body: &e.body,
        encoding: e.encoding.as_deref(),
        account: e.account.as_deref(),
        region: e.region.as_deref(),
    };
    encode_entry(&e.request_id, e.arrival_ms, &sent)
}

fn append_all(wal: &mut Wal, entries: &[WalEntry]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| {
            let bytes = encoded(e);
            wal.append_encoded(&bytes).unwrap();
            bytes.len() as u64
        })
        .collect()
}

#[test]
fn a_logged_body_decodes_to_the_records_sent() {
    for i in [0, 1, 6, 7] {
        let e = entry(i);
        let request = e.decode().unwrap();
        assert_eq!(request.request_id, e.request_id);
        assert_eq!(request.records().count() as u64, i % 4 + 1);
        let first = std::str::from_utf8(request.records().next().unwrap()).unwrap();
        assert!(first.starts_with(&format!("2 123456789012 eni-{i} 10.0.0.0 ")), "{first}");
    }
}

#[test]
fn entries_read_back_as_written_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<WalEntry> = (0..6).map(entry).collect();
    let mut wal = Wal::open(dir.path(), 4).unwrap();
    append_all(&mut wal, &entries[..3]);
    wal.file().sync_data().unwrap();
    drop(wal);
    let mut wal = Wal::open(dir.path(), 4).unwrap();
    append_all(&mut wal, &entries[3..]);
    wal.file().sync_data().unwrap();
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
    wal.file().sync_data().unwrap();
    drop(wal);
    let path = path_of(dir.path(), 1);
    let full = std::fs::read(&path).unwrap();
    let last_start = sizes[..3].iter().sum::<u64>() as usize;
    for cut in last_start..=full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let got = recover(dir.path(), 1).unwrap();
        let whole = if cut == full.len() { 4 } else { 3 };
        assert_eq!(got.entries, entries[..whole], "cut at {cut}");
        let kept = if whole == 4 { full.len() } else { last_start };
        assert_eq!(got.cut_bytes as usize, cut - kept, "cut at {cut}");
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, kept);
    }
    // A flipped byte anywhere inside an entry cuts from that entry on.
    for at in [0, 5, 9, sizes[1] as usize - 1] {
        let mut bad = full.clone();
        bad[sizes[0] as usize + at] ^= 0x5a;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(recover(dir.path(), 1).unwrap().entries, entries[..1], "byte {at}");
    }
    let mut wal = Wal::open(dir.path(), 1).unwrap();
    append_all(&mut wal, &entries[1..2]);
    wal.file().sync_data().unwrap();
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
    wal.file().sync_data().unwrap();
    // A log newer than the restored state cannot be applied without its state: it goes.
    std::fs::write(path_of(dir.path(), 9), b"junk").unwrap();
    assert_eq!(recover(dir.path(), 3).unwrap().entries, [entry(1)]);
    assert!(!path_of(dir.path(), 9).exists());
    assert!(recover(dir.path(), 4).unwrap().entries.is_empty());
}

proptest::proptest! {
    /// Any bytes read as a log never panic, and what they yield re-encodes to their prefix.
    #[test]
    fn arbitrary_bytes_decode_to_a_prefix_of_whole_entries(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let (entries, whole) = decode_entries(&bytes);
        let mut again = Vec::new();
        for e in &entries {
            again.extend(encoded(e));
        }
        proptest::prop_assert_eq!(&again[..], &bytes[..whole]);
    }
}
