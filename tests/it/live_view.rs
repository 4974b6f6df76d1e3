//! The live view in headless Chromium over WebDriver: provisional numbers before the first
//! close, the overview's numbers equal to the API's, a closed window replacing them without a
//! reload, the drill-down to a source's flows, the findings page, no console errors and no
//! request to another host. Screenshots go to `target/screenshots/`.

use fantoccini::{Client, Locator};
use serde_json::Value;

use crate::common::browser::{Driver, screenshot, wait_for};
use crate::common::serve::{Firehose, Server, wrapped};
use crate::common::tools::AWS_ENV;
use crate::findings::{LOCAL, ONE_MINUTE_WINDOWS, line};

const IFACE: &str = "eni-0aaa";

/// Minute 0 of eni-0aaa: a port scan, a client's requests and the interface's replies.
fn first_minute() -> Vec<String> {
    let mut lines: Vec<String> =
        (1..=100).map(|p| line(0, "198.51.100.66", LOCAL, (55_000, p), 40, "REJECT")).collect();
    lines.extend((0..5).map(|i| line(0, "10.0.0.1", LOCAL, (40_000 + i, 443), 1_000, "ACCEPT")));
    lines.push(line(0, LOCAL, "10.0.0.1", (443, 40_000), 2_000, "ACCEPT"));
    lines.iter().map(|l| l.trim_end().to_string()).collect()
}

async fn send(server: &Server, id: &str, lines: &[String]) {
    let (status, _) = Firehose::new(&server.ingest, None).send(id, &wrapped(lines)).await;
    assert_eq!(status, 200);
}

/// The `data-value` of the cell `selector` finds, or null.
fn value_of(selector: &str) -> String {
    format!(
        "const c = document.querySelector({selector:?}); return c ? Number(c.dataset.value) : null;"
    )
}

/// Clicks the element `selector` finds, once the page has drawn it.
async fn click(client: &Client, selector: &str) {
    let element = client
        .wait()
        .at_most(std::time::Duration::from_secs(30))
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no {selector}: {e}"));
    element.click().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_provisional_then_final_numbers_and_drills_down() {
    // EC2's description of the interface comes from the cache in the state directory (EC2
    // itself is unreachable), so the page names the interface before any window closes.
    let dir = tempfile::tempdir().unwrap();
    let cache = serde_json::json!({"written_at_ms": 0, "interfaces": [{
        "interface_id": IFACE, "region": "us-east-1", "name": "web-1",
        "local_addresses": [LOCAL],
    }]});
    std::fs::write(dir.path().join("ec2-interfaces.json"), cache.to_string()).unwrap();
    let ec2 = crate::common::unreachable_url();
    let state = dir.path().to_str().unwrap();
    let enrich = ["--state-dir", state, "--ec2-regions", "us-east-1", "--ec2-endpoint-url", &ec2];
    let args: Vec<&str> = ONE_MINUTE_WINDOWS.iter().copied().chain(enrich).collect();
    let server = Server::start(&args, &AWS_ENV);
    let driver = Driver::start().await;
    let client = driver.browser(1280, 900).await;
    client.goto(&format!("{}/", server.admin)).await.unwrap();
    wait_for(&client, "the overview", "return !!document.querySelector('#overview')", |v| {
        v == true
    })
    .await;

    // Provisional: the window is open, and the page shows its running totals.
    send(&server, "minute-0", &first_minute()).await;
    // The shards apply what was acknowledged in batches, so the open window's totals reach
    // the whole minute shortly after the 200.
    let provisional = 100 * 40 + 5 * 1_000 + 2_000;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let open = server.get("/api/v1/open").await;
        if open[0]["bytes"] == provisional {
            assert_eq!(open[0]["provisional"], true);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "open windows: {open}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let cell = format!("tr.provisional[data-interface={IFACE:?}] td.bytes");
    wait_for(&client, "provisional bytes", &value_of(&cell), |v| v == provisional).await;
    let name = format!(
        "const n = document.querySelector('tr.provisional[data-interface={IFACE:?}] [data-name]'); \
         return n ? n.textContent : null;"
    );
    assert_eq!(client.execute(&name, Vec::new()).await.unwrap(), "web-1");
    client.execute("window.__sameDocument = true; return true", Vec::new()).await.unwrap();
    screenshot(&client, "live-overview-provisional").await;

    // A record two minutes on closes the window; the page replaces the numbers by itself.
    send(&server, "minute-2", &[line(2, "10.0.0.1", LOCAL, (40_009, 443), 500, "ACCEPT")]).await;
    let of_iface = |list: &Value| {
        list.as_array().unwrap().iter().find(|i| i["interface_id"] == IFACE).cloned()
    };
    let list = server
        .wait_for_at("/api/v1/interfaces", "the closed window", |l| of_iface(l).is_some())
        .await;
    let closed = of_iface(&list).unwrap();
    let final_cell = format!("tr[data-interface={IFACE:?}]:not(.provisional) td.bytes");
    wait_for(&client, "final bytes", &value_of(&final_cell), |v| *v == closed["bytes"]).await;
    let rejected = format!("tr[data-interface={IFACE:?}] td.rejected");
    assert_eq!(
        client.execute(&value_of(&rejected), Vec::new()).await.unwrap(),
        closed["rejected_flows"]
    );
    let same = client.execute("return window.__sameDocument === true", Vec::new()).await.unwrap();
    assert_eq!(same, true, "the new window came without a reload");
    screenshot(&client, "live-overview").await;
    // The region's roll-up, equal to the API's.
    let region = server.get("/api/v1/rollups/region").await;
    let cell = "section[data-kind=region] tr[data-rollup] td.bytes";
    wait_for(&client, "the region roll-up", &value_of(cell), |v| *v == region[0]["bytes"]).await;
    let account = "return !!document.querySelector('section[data-kind=account] tr[data-rollup=\"111111111111\"]')";
    assert_eq!(client.execute(account, Vec::new()).await.unwrap(), true, "the account's roll-up");

    // The filters: by text, region and account, kept in the address.
    let rows = "return [...document.querySelectorAll('#overview tr[data-interface]')].map(r => r.dataset.interface)";
    for (query, expected) in [
        ("q=0bbb", Vec::<&str>::new()),
        ("q=0AAA&region=us-east-1", vec![IFACE]),
        ("region=eu-west-1", vec![]),
        ("account=111111111111", vec![IFACE]),
    ] {
        client.goto(&format!("{}/#/?{query}", server.admin)).await.unwrap();
        let expected: Vec<Value> = expected.into_iter().map(Value::from).collect();
        wait_for(&client, query, rows, |v| v.as_array() == Some(&expected)).await;
    }
    client.goto(&format!("{}/", server.admin)).await.unwrap();

    // Drill-down: the interface's sources in the API's order, and a source's flows.
    click(&client, &format!("a[href='#/interface/{IFACE}']")).await;
    let snapshot = &server.get(&format!("/api/v1/interfaces/{IFACE}/snapshots?limit=1")).await[0];
    let sources: Vec<Value> =
        snapshot["sources"].as_array().unwrap().iter().map(|s| s["address"].clone()).collect();
    let listed = "return [...document.querySelectorAll('#interface tr[data-source]')].map(r => r.dataset.source)";
    wait_for(&client, "the sources", listed, |v| v.as_array().is_some_and(|a| *a == sources)).await;
    click(&client, "tr[data-source='198.51.100.66'] button").await;
    let scanner = snapshot["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == "198.51.100.66")
        .unwrap();
    let flows = "return document.querySelectorAll('tr.detail:not([hidden]) tr.flow').length";
    let expected = scanner["top_flows"].as_array().unwrap().len();
    wait_for(&client, "the scanner's flows", flows, |v| v == expected).await;
    let rejects = "return document.querySelectorAll('tr.detail:not([hidden]) td.REJECT').length";
    assert_eq!(
        client.execute(rejects, Vec::new()).await.unwrap(),
        expected,
        "every probe was rejected"
    );
    screenshot(&client, "live-interface").await;

    // Findings: newest first, linking to the interface.
    client.goto(&format!("{}/#/findings", server.admin)).await.unwrap();
    let kinds = "return [...document.querySelectorAll('tr.finding td:nth-child(2)')].map(c => c.textContent)";
    wait_for(&client, "the port scan", kinds, |v| {
        v.as_array().is_some_and(|a| a.iter().any(|k| k == "port_scan"))
    })
    .await;
    click(&client, "#theme").await;
    screenshot(&client, "live-findings-dark").await;
    client.set_window_size(390, 844).await.unwrap();
    client.goto(&format!("{}/#/interface/{IFACE}", server.admin)).await.unwrap();
    wait_for(&client, "the phone layout", listed, |v| v.as_array().is_some_and(|a| !a.is_empty()))
        .await;
    screenshot(&client, "live-interface-phone").await;

    // Nothing from another host, and nothing logged as an error.
    let requests =
        "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]";
    let requests = client.execute(requests, Vec::new()).await.unwrap();
    let requests = requests.as_array().unwrap();
    assert!(requests.len() > 3, "{requests:?}");
    for r in requests {
        assert!(r.as_str().unwrap().starts_with(&server.admin), "a request elsewhere: {r}");
    }
    assert_eq!(driver.console_errors(&client).await, Vec::<String>::new());
    client.close().await.unwrap();
    server.stop();
}

/// Reads an event stream until it has seen `until` (an SSE `event:` line), returning what it
/// read.
async fn read_events(mut response: reqwest::Response, until: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(until) {
        match response.chunk().await {
            Ok(Some(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => panic!("the stream ended before {until:?}: {seen}"),
        }
    }
    seen
}

/// Fifty event streams at once each get the window's close; a browser on the page sees the
/// server go, reconnects to the next process on the same address, fetches everything again
/// (that process's store starts empty) and shows its new window without a reload. A stream
/// resumed with an id of the old process is told to resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_streams_get_each_close_and_the_page_reconnects_after_a_restart() {
    let server = Server::start(&ONE_MINUTE_WINDOWS, &[]);
    let admin = server.admin.trim_start_matches("http://").to_string();
    let driver = Driver::start().await;
    let client = driver.browser(1280, 900).await;
    client.goto(&format!("{}/", server.admin)).await.unwrap();
    let live = "return document.getElementById('live').textContent";
    wait_for(&client, "the stream", live, |v| v == "live").await;
    client.execute("window.__sameDocument = true; return true", Vec::new()).await.unwrap();

    let http = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..50 {
        let response = http.get(format!("{}/api/v1/events", server.admin)).send().await.unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        streams.push(tokio::spawn(read_events(response, "event: window_closed")));
    }
    send(&server, "minute-0", &first_minute()).await;
    send(&server, "minute-2", &[line(2, "10.0.0.1", LOCAL, (40_009, 443), 500, "ACCEPT")]).await;
    let mut last_id = String::new();
    for stream in streams {
        let seen = tokio::time::timeout(std::time::Duration::from_secs(60), stream)
            .await
            .expect("each stream gets the close")
            .unwrap();
        assert!(seen.starts_with("event: hello"), "{seen}");
        let id = seen.lines().find_map(|l| l.strip_prefix("id: ")).expect("an event id");
        last_id = id.to_string();
    }
    let row = format!(
        "return !!document.querySelector('tr[data-interface={IFACE:?}]:not(.provisional)')"
    );
    wait_for(&client, "the first process's window", &row, |v| v == true).await;

    // The restart: the page loses its stream, then finds the next process on the same address.
    let (status, _, _) = server.stop();
    assert!(status.success());
    wait_for(&client, "the page to notice", live, |v| v == "reconnecting…").await;
    let server = Server::start_at(&admin, &ONE_MINUTE_WINDOWS, &[]);
    wait_for(&client, "the reconnect", live, |v| v == "live").await;
    let empty = "return !!document.querySelector('#overview .empty')";
    wait_for(&client, "the new process's empty store", empty, |v| v == true).await;
    send(&server, "minute-5", &[line(5, "10.0.0.1", LOCAL, (40_010, 443), 700, "ACCEPT")]).await;
    send(&server, "minute-7", &[line(7, "10.0.0.1", LOCAL, (40_011, 443), 800, "ACCEPT")]).await;
    let cell = format!("tr[data-interface={IFACE:?}]:not(.provisional) td.bytes");
    wait_for(&client, "the second process's window", &value_of(&cell), |v| v == 700).await;
    let same = client.execute("return window.__sameDocument === true", Vec::new()).await.unwrap();
    assert_eq!(same, true, "no reload across the restart");
    screenshot(&client, "live-after-restart").await;

    let resumed = http
        .get(format!("{}/api/v1/events", server.admin))
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    let hello = read_events(resumed, "\n\n").await;
    assert!(hello.contains("\"resync\":true"), "an old process's id resyncs: {hello}");
    // While no process listened, the browser logged the requests it could not make (refused
    // connections); nothing else.
    let errors = driver.console_errors(&client).await;
    let unexpected: Vec<&String> =
        errors.iter().filter(|e| !e.contains("net::ERR_CONNECTION_REFUSED")).collect();
    assert!(unexpected.is_empty(), "{errors:#?}");
    client.close().await.unwrap();
    server.stop();
}
