//! The findings webhook against a real HTTP receiver: each finding posted once with its Slack
//! text, a 503 retried, a 400 not retried, and a receiver that is down counted and logged while
//! ingest answers as always.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::common::serve::Server;
use crate::findings::{ONE_MINUTE_WINDOWS, send_two_port_scans};

/// A webhook receiver on a free port: post `i` is answered `answers[i]` (200 past the end), and
/// every post is kept with its headers.
struct Receiver {
    url: String,
    posts: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(answers: Vec<u16>) -> Receiver {
        let posts: Arc<Mutex<Vec<(HeaderMap, Value)>>> = Arc::default();
        let kept = posts.clone();
        let app = axum::Router::new().route(
            "/secret-path",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let kept = kept.clone();
                let answers = answers.clone();
                async move {
                    let mut posts = kept.lock().unwrap();
                    let answer = answers.get(posts.len()).copied().unwrap_or(200);
                    posts.push((headers, serde_json::from_slice(&body).unwrap()));
                    StatusCode::from_u16(answer).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/secret-path", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url, posts, task }
    }

    fn posts(&self) -> Vec<(HeaderMap, Value)> {
        self.posts.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts `serve` in one-minute windows posting to `url`, with short retry waits.
fn server_posting_to(url: &str, attempts: &str) -> Server {
    let mut args = ONE_MINUTE_WINDOWS.to_vec();
    args.extend(["--webhook-url", url]);
    Server::start(
        &args,
        &[
            ("VPCFLOWD_ALERTS__BACKOFF", "20ms"),
            ("VPCFLOWD_ALERTS__ATTEMPTS", attempts),
            ("VPCFLOWD_ALERTS__WEBHOOK_HEADERS", "{authorization=\"Bearer t0k3n\"}"),
        ],
    )
}

async fn listed_findings(server: &Server) -> Vec<Value> {
    let url = format!("{}/api/v1/findings", server.admin);
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

fn alerts(status: &Value, field: &str) -> u64 {
    status["alerts"][field].as_u64().unwrap()
}

/// Sends two port scans to a server posting to a receiver answering `answers`, and waits until
/// the status counts two findings as `outcome` (`webhook_delivered`, `webhook_failed`).
async fn two_scans_until(answers: Vec<u16>, outcome: &str) -> (Receiver, Server, Value) {
    let receiver = Receiver::start(answers).await;
    let server = server_posting_to(&receiver.url, "5");
    send_two_port_scans(&server).await;
    let status = server.wait_for(outcome, |s| alerts(s, outcome) == 2).await;
    (receiver, server, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_finding_is_posted_once_and_a_503_is_retried() {
    let (receiver, server, status) = two_scans_until(vec![503], "webhook_delivered").await;
    assert_eq!(alerts(&status, "webhook_retries"), 1);
    assert_eq!(alerts(&status, "webhook_failed"), 0);
    assert_eq!(alerts(&status, "webhook_dropped"), 0);
    let posts = receiver.posts();
    assert_eq!(posts.len(), 3, "the 503'd post, its retry, the second window's");
    assert_eq!(posts[0].1, posts[1].1, "a retry posts the same finding");
    let windows: Vec<u64> =
        posts[1..].iter().map(|(_, b)| b["window_start"].as_u64().unwrap()).collect();
    assert_eq!(windows[1], windows[0] + 60, "in the order the windows closed");
    for (headers, body) in &posts {
        assert_eq!(headers["authorization"], "Bearer t0k3n");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body["event"], "vpcflowd.finding");
        assert_eq!(body["kind"], "port_scan");
        assert_eq!(body["subject"], "198.51.100.66");
        assert_eq!(body["interface_id"], "eni-0aaa");
        assert_eq!(body["threshold"], 100.0);
        let text = body["text"].as_str().unwrap();
        assert!(
            text.starts_with("vpcflowd port_scan on eni-0aaa (us-east-1, 111111111111), window "),
            "{text}"
        );
    }
    // The API lists the same findings the webhook was sent.
    let listed = listed_findings(&server).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["window_start"], posts[1].1["window_start"]);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_not_retried() {
    let (receiver, server, status) = two_scans_until(vec![400, 400], "webhook_failed").await;
    assert_eq!(alerts(&status, "webhook_retries"), 0);
    assert_eq!(alerts(&status, "webhook_delivered"), 0);
    assert_eq!(receiver.posts().len(), 2);
    server.stop();
}

/// With nothing listening at the URL every post is refused: each finding is tried `attempts`
/// times, then counted failed and logged by host only (the path is the secret), while every
/// Firehose request is acknowledged as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_is_counted_and_logged_and_ingest_goes_on() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/secret-path", closed.local_addr().unwrap());
    drop(closed);
    let server = server_posting_to(&url, "3");
    send_two_port_scans(&server).await;
    let status = server.wait_for("two findings failed", |s| alerts(s, "webhook_failed") == 2).await;
    assert_eq!(alerts(&status, "webhook_retries"), 4, "two retries per finding");
    assert_eq!(alerts(&status, "webhook_delivered"), 0);
    assert_eq!(alerts(&status, "webhook_queue_depth"), 0);
    assert_eq!(status["ingest"]["records"], 201);
    let (exit, _, stderr) = server.stop();
    assert!(exit.success());
    let failures: Vec<&String> =
        stderr.iter().filter(|l| l.contains("webhook: finding not delivered")).collect();
    assert_eq!(failures.len(), 2, "{stderr:#?}");
    assert!(failures.iter().all(|l| l.contains("127.0.0.1") && l.contains("cannot connect")));
    assert!(!stderr.iter().any(|l| l.contains("secret-path")), "the URL's path is not logged");
}

/// A late record that corrects a closed window (`--late update`) posts the findings the
/// correction adds, and not again those the window already had. With two minutes of lateness a
/// record ending at minute 3½ closes the first window and leaves it open to corrections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_posts_only_the_findings_its_window_did_not_have() {
    use crate::common::serve::{Firehose, wrapped};
    use crate::findings::{LOCAL, line};
    let receiver = Receiver::start(Vec::new()).await;
    let mut args = ONE_MINUTE_WINDOWS.to_vec();
    args[1] = "2m";
    args.extend(["--late", "update", "--webhook-url", &receiver.url]);
    let server = Server::start(&args, &[]);
    let scan = |source: &str, port: u16| -> Vec<String> {
        (1..=100)
            .map(|p| line(0, source, LOCAL, (port, p), 40, "REJECT").trim_end().into())
            .collect()
    };
    let firehose = Firehose::new(&server.ingest, None);
    let mut first = scan("198.51.100.66", 55_000);
    first.push(line(3, "10.0.0.1", LOCAL, (40_000, 443), 100, "ACCEPT").trim_end().into());
    assert_eq!(firehose.send("first", &wrapped(&first)).await.0, 200);
    server.wait_for("the first finding", |s| alerts(s, "webhook_delivered") == 1).await;
    // A second scanner in the same window, arriving after it closed, and a record that moves
    // the watermark on: corrections go out at the engine's next watermark step.
    let mut late = scan("198.51.100.77", 56_000);
    late.push(line(4, "10.0.0.1", LOCAL, (40_001, 443), 100, "ACCEPT").trim_end().into());
    assert_eq!(firehose.send("late", &wrapped(&late)).await.0, 200);
    let status =
        server.wait_for("the correction's finding", |s| alerts(s, "webhook_delivered") == 2).await;
    assert_eq!(status["engine"]["revisions"], 1);
    let posts = receiver.posts();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].1["subject"], "198.51.100.66");
    assert_eq!(posts[1].1["subject"], "198.51.100.77");
    assert_eq!(posts[1].1["window_start"], posts[0].1["window_start"]);
    let listed = listed_findings(&server).await;
    assert_eq!(listed.len(), 2, "the API holds both scanners of the corrected window");
    server.stop();
}
