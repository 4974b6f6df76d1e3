use super::parse::{PlainLines, parse_chunk_as};
use super::*;
use crate::decode::Layout;
use crate::record::RouteInput;

const LINE: &str =
    "2 111111111111 eni-a 10.0.0.1 10.0.0.2 1 2 6 3 300 1700000000 1700000060 ACCEPT OK";

fn text_source(name: &str, text: String) -> Source {
    let open: Opener = Box::new(move || Ok(Box::new(io::Cursor::new(text.into_bytes()))));
    Source { name: name.into(), open, live: false }
}

/// Everything delivered: (input, interface, bytes) per record, and (input, line, message)
/// per rejection, plus summed counts.
type Delivered = (Vec<(usize, String, Option<u64>)>, Vec<(usize, u64, String)>, ReadStats);

fn deliver(sources: Vec<Source>, config: ChunkConfig) -> Delivered {
    let mut inputs = ParsedInputs::start(sources, LayoutSet::default(), config);
    let (mut records, mut messages, mut stats) = (Vec::new(), Vec::new(), ReadStats::default());
    let mut streaming = FileReader::new(LayoutSet::default());
    while let Some(d) = inputs.next_chunk() {
        match d {
            Delivery::Chunk(c) => {
                for r in c.records.inputs() {
                    records.push((c.input, r.interface.unwrap().to_string(), r.fields.bytes));
                }
                messages.extend(c.messages.iter().map(|(l, m)| (c.input, *l, m.clone())));
                stats.add(&c.stats);
            }
            Delivery::Unparsed(u) => u.read(
                &mut streaming,
                |p, ctx| match RouteInput::of(&p.record, ctx).interface {
                    Some(id) => {
                        records.push((u.input, id.to_string(), p.record.bytes));
                        Ok(())
                    }
                    None => Err(MISSING_INTERFACE),
                },
                |r| messages.push((u.input, r.line, r.detail.to_string())),
            ),
            Delivery::Failed { .. } => panic!("no input fails here"),
        }
    }
    assert_eq!(inputs.reparsed(), 0, "the splitter followed every header line");
    inputs.close();
    stats.add(&streaming.stats);
    (records, messages, stats)
}

/// What one `FileReader` reads from each input in turn: the reference.
fn read_serially(texts: &[String]) -> Delivered {
    let (mut records, mut messages, mut stats) = (Vec::new(), Vec::new(), ReadStats::default());
    for (i, text) in texts.iter().enumerate() {
        let mut reader = FileReader::new(LayoutSet::default());
        reader
            .read(
                &mut text.as_bytes(),
                |p, ctx| match RouteInput::of(&p.record, ctx).interface {
                    Some(id) => {
                        records.push((i, id.to_string(), p.record.bytes));
                        Ok(())
                    }
                    None => Err(MISSING_INTERFACE),
                },
                |r| messages.push((i, r.line, r.detail.to_string())),
            )
            .unwrap();
        stats.add(&reader.stats);
    }
    (records, messages, stats)
}

fn config(chunk_bytes: usize, threads: usize, in_flight: usize) -> ChunkConfig {
    ChunkConfig { chunk_bytes, threads, in_flight, max_record_bytes: usize::MAX }
}

fn sample_inputs() -> Vec<String> {
    let mut a = String::new();
    for i in 0..40 {
        a += &LINE.replace(" 300 ", &format!(" {i} "));
        a.push('\n');
        if i == 7 {
            a += "not a flow log\n";
        }
        if i == 20 {
            // From here on, lines have two fields, so every later chunk depends on this one.
            a += "interface-id bytes\n";
        }
        if i > 20 {
            a += &format!("eni-h{i} {i}\n");
        }
    }
    // The third input holds a header whose layouts a later header restores, and a last line
    // without its `\n`.
    let b = format!("bytes interface-id\n5 eni-x\n{LINE}\nversion account-id\n{LINE}");
    vec![a, String::new(), b]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// For random inputs of flow-log lines, junk, blank lines, `{"message"}` records and header
    /// lines (which change the layouts of every later chunk), cut at random sizes, the chunks
    /// deliver exactly what one reader reading each input in turn does.
    #[test]
    fn any_inputs_any_cut_read_as_one_reader_reads_them(
        inputs in proptest::collection::vec(
            proptest::collection::vec(0usize..LINES.len(), 0..40), 1..4),
        chunk_bytes in 1usize..400,
        threads in 1usize..4,
        in_flight in 1usize..6,
        max_record_bytes in proptest::prop_oneof![proptest::strategy::Just(usize::MAX), 0usize..600],
    ) {
        let texts: Vec<String> = inputs
            .iter()
            .map(|lines| lines.iter().map(|&i| format!("{}\n", LINES[i])).collect())
            .collect();
        let sources = texts
            .iter()
            .enumerate()
            .map(|(i, t)| text_source(&format!("in{i}"), t.clone()))
            .collect();
        let config = ChunkConfig { max_record_bytes, ..config(chunk_bytes, threads, in_flight) };
        let got = deliver(sources, config);
        proptest::prop_assert_eq!(got, read_serially(&texts));
    }
}

/// Random chunks of the same lines, parsed with and without the plain-line shortcut, give the
/// same records, counts, rejections (with their samples and messages), layouts at the end, and
/// oversize verdict.
#[test]
fn the_plain_line_shortcut_changes_nothing_a_chunk_delivers() {
    let mut runner = proptest::test_runner::TestRunner::default();
    let lines = proptest::collection::vec(0usize..LINES.len(), 0..30);
    let max = proptest::prop_oneof![proptest::strategy::Just(usize::MAX), 0usize..900];
    let started = proptest::option::of(proptest::strategy::Just(()));
    let custom_first = proptest::bool::ANY;
    runner
        .run(
            &(lines, max, started, custom_first),
            |(lines, max_record_bytes, started, custom_first)| {
                let text: String = lines.iter().map(|&i| format!("{}\n", LINES[i])).collect();
                // The chunk starts under an earlier header's layouts or under the configured
                // ones: the default set, or one whose first format is another (no line takes the
                // shortcut until a header sets the default format).
                let started = started.map(|()| LayoutSet::single(Layout::default_format()));
                let configured = match custom_first {
                    true => LayoutSet::from_formats(&["interface-id bytes", "default"]).unwrap(),
                    false => LayoutSet::default(),
                };
                let parse = |plain| {
                    let mut reader = FileReader::new(configured.clone());
                    let bytes = text.clone().into_bytes();
                    let c = parse_chunk_as(
                        &mut reader,
                        0,
                        bytes,
                        started.clone(),
                        max_record_bytes,
                        plain,
                    );
                    let rejects: Vec<_> = c
                        .rejects
                        .iter()
                        .map(|(r, n)| (r, n, c.rejects.sample(r).cloned()))
                        .collect();
                    (c.records, c.stats, rejects, c.messages, c.ended_under, c.oversized)
                };
                proptest::prop_assert_eq!(
                    parse(PlainLines::Shortcut),
                    parse(PlainLines::Reader),
                    "{}",
                    text
                );
                Ok(())
            },
        )
        .unwrap();
}

/// Lines the property tests draw from: plain default-format lines the shortcut takes,
/// and lines it must leave to the reader (malformed, wrapped, no interface, headers, a
/// space too many, a trailing `\r`).
const LINES: [&str; 15] = [
    LINE,
    "2 - eni-b 10.0.0.3 10.0.0.4 5 6 17 1 50 1700000001 1700000061 REJECT OK",
    "not a flow log",
    "",
    "interface-id bytes",
    "eni-h 7",
    "version interface-id account-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status",
    r#"{"message":"2 1 eni-w 10.0.0.1 10.0.0.2 1 2 6 3 9 1700000000 1700000060 ACCEPT OK"}"#,
    "2 - - 10.0.0.1 10.0.0.2 1 2 6 3 300 1700000000 1700000060 ACCEPT OK",
    "2 111111111111 eni-c 10.0.0.1 10.0.0.2 1 2 6 3 300 1700000000 1700000060 ACCEPT OK\r",
    "- 111111111111 eni-d 2001:db8::1 10.0.0.2 1 2 6 3 30 1700000000 1700000060 REJECT OK",
    "2 111111111111 eni-e - - - - - - - 1700000000 1700000060 - NODATA",
    "2 111111111111 eni-f 10.0.0.1 10.0.0.2 1 2 6 3 x 1700000000 1700000060 ACCEPT OK",
    "2  111111111111 eni-g 10.0.0.1 10.0.0.2 1 2 6 3 4 1700000000 1700000060 ACCEPT OK",
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status",
];

#[test]
fn chunks_come_back_as_one_reader_reads_the_inputs_whatever_the_cut() {
    let texts = sample_inputs();
    let reference = read_serially(&texts);
    assert!(reference.0.len() >= 40 && reference.1.len() >= 20, "the sample exercises both");
    for (chunk_bytes, threads, in_flight) in
        [(1, 1, 1), (7, 2, 3), (64, 3, 8), (300, 2, 2), (1 << 20, 2, 6)]
    {
        let sources = texts
            .iter()
            .enumerate()
            .map(|(i, t)| text_source(&format!("in{i}"), t.clone()))
            .collect();
        let got = deliver(sources, config(chunk_bytes, threads, in_flight));
        assert_eq!(got, reference, "chunks of {chunk_bytes} bytes, {threads} threads");
    }
}

#[test]
fn a_failed_input_delivers_its_whole_lines_then_the_error_and_the_rest_goes_on() {
    struct FailAfter(io::Cursor<Vec<u8>>);
    impl io::Read for FailAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(io::Error::other("disk on fire")),
                n => Ok(n),
            }
        }
    }
    let broken = format!("{LINE}\n{LINE}\npartial");
    let failing: Opener = Box::new(move || {
        Ok(Box::new(io::BufReader::with_capacity(
            16,
            FailAfter(io::Cursor::new(broken.into_bytes())),
        )))
    });
    let sources = vec![
        Source { name: "bad".into(), open: failing, live: false },
        Source {
            name: "missing".into(),
            open: Box::new(|| Err(io::Error::other("no such"))),
            live: false,
        },
        text_source("good", format!("{LINE}\n")),
    ];
    let mut inputs = ParsedInputs::start(sources, LayoutSet::default(), config(8, 2, 2));
    let mut seen = Vec::new();
    while let Some(d) = inputs.next_chunk() {
        match d {
            Delivery::Chunk(c) => seen.push(format!("{}: {} records", c.input, c.records.len())),
            Delivery::Failed { input, error } => seen.push(format!("{input}: {error}")),
            Delivery::Unparsed(_) => panic!("no chunk is oversized here"),
        }
    }
    let records_of = |input: &str| {
        seen.iter()
            .filter(|s| s.starts_with(input) && s.ends_with("records"))
            .map(|s| s.split(' ').nth(1).unwrap().parse::<usize>().unwrap())
            .sum::<usize>()
    };
    assert_eq!(records_of("0:"), 2, "{seen:?}");
    assert!(seen.contains(&"0: disk on fire".to_string()), "{seen:?}");
    assert!(seen.contains(&"1: no such".to_string()), "{seen:?}");
    assert_eq!(records_of("2:"), 1, "{seen:?}");
    assert_eq!(inputs.name(1), "missing");
}

/// When standard input is fed as events happen, each line is delivered once it has arrived,
/// while the input is still open, without waiting for a chunk to fill.
#[test]
fn a_live_input_delivers_each_line_as_it_arrives() {
    struct Feed(std::sync::mpsc::Receiver<Vec<u8>>);
    impl io::Read for Feed {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Ok(bytes) = self.0.recv() else { return Ok(0) };
            buf[..bytes.len()].copy_from_slice(&bytes);
            Ok(bytes.len())
        }
    }
    let (feed, fed) = std::sync::mpsc::channel();
    let open: Opener = Box::new(move || Ok(Box::new(io::BufReader::new(Feed(fed)))));
    let source = Source { name: "<stdin>".into(), open, live: true };
    let mut inputs =
        ParsedInputs::start(vec![source], LayoutSet::default(), ChunkConfig::default());
    let (out, delivered) = std::sync::mpsc::channel();
    let consumer = std::thread::spawn(move || {
        while let Some(Delivery::Chunk(c)) = inputs.next_chunk() {
            let _ = out.send(c.records.len());
        }
        inputs.close();
    });
    let wait = std::time::Duration::from_secs(60); // Reached only if the line never comes.
    for _ in 0..3 {
        feed.send(format!("{LINE}\n").into_bytes()).unwrap();
        assert_eq!(delivered.recv_timeout(wait), Ok(1), "the line waited for more input");
    }
    drop(feed);
    consumer.join().unwrap();
}

#[test]
#[should_panic(expected = "the reader thread stopped before the end")]
fn a_reader_that_panics_is_not_taken_for_the_end_of_the_input() {
    let open: Opener = Box::new(|| panic!("a broken input"));
    let source = Source { name: "broken".into(), open, live: false };
    let mut inputs =
        ParsedInputs::start(vec![source], LayoutSet::default(), ChunkConfig::default());
    while inputs.next_chunk().is_some() {}
}

#[test]
fn a_consumer_that_stops_early_stops_every_thread() {
    let text: String = (0..2000).map(|_| format!("{LINE}\n")).collect();
    let mut inputs =
        ParsedInputs::start(vec![text_source("big", text)], LayoutSet::default(), config(64, 2, 2));
    assert!(inputs.next_chunk().is_some());
    inputs.close(); // This joins the splitter and the parse threads, so a hang fails the test.
}
