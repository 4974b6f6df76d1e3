//! The findings webhook: one JSON `POST` per newly raised finding to `[alerts] webhook_url`.
//!
//! This module owns the `[alerts]` configuration, the bounded queue in front of the receiver and
//! the delivery task. [`Webhook::offer`] never waits: when the queue is full the finding is
//! dropped, counted in `vpcflowd.alerts.webhook{outcome="dropped"}` and logged, so a slow or
//! dead receiver never holds back ingest or the engine. The task delivers findings one at a
//! time, in the order they were raised, and retries a failed delivery with exponential backoff.
//!
//! ```text
//! snapshot consumer ─► SnapshotStore::insert ─► raised findings ─► offer (try_send)
//!                                                                     │ full: dropped, counted
//!                                                                     ▼
//!                                       queue ─► delivery task ─► POST webhook_url
//!                                                 (retries: 5xx, 429, timeouts, refused)
//! ```
//!
//! The body is the finding as `/api/v1/findings` lists it, plus `event`
//! (`"vpcflowd.finding"`) and `text`, a one-line summary that Slack's and Mattermost's incoming
//! webhooks show as the message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::window::findings::WindowFinding;

/// Where findings are pushed as they are raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// `http://` or `https://` URL that receives one JSON `POST` per finding when its window
    /// closes (a correction posts only the findings its window did not have). The body has the
    /// finding's fields as `/api/v1/findings` lists them and a `text` summary, so a Slack or
    /// Mattermost incoming-webhook URL works as it is. Such URLs are secrets: set them through
    /// `VPCFLOWD_ALERTS__WEBHOOK_URL` rather than a file, and logs name only the host.
    pub webhook_url: Option<String>,
    /// Extra headers on every post, e.g. `{ authorization = "Bearer …" }`.
    pub webhook_headers: BTreeMap<String, String>,
    /// Findings waiting for delivery. When the receiver falls behind and this is full, a newly
    /// raised finding is dropped (counted in `vpcflowd.alerts.webhook{outcome="dropped"}` and
    /// logged); ingest never waits for the webhook.
    pub queue: usize,
    /// Timeout of one post.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub timeout: Duration,
    /// Posts of one finding, the first included. A post is retried after a connection error, a
    /// timeout, a 5xx or a 429 answer; any other answer outside 2xx fails it at once. A finding
    /// that fails is counted in `vpcflowd.alerts.webhook{outcome="failed"}` and logged.
    pub attempts: u32,
    /// The wait before the first retry; it doubles after each failed post, up to
    /// `max_backoff`. A 429 answer's `Retry-After` (seconds) is honoured up to `max_backoff`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub backoff: Duration,
    /// The longest wait between two posts of one finding.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub max_backoff: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook_url: None,
            webhook_headers: BTreeMap::new(),
            queue: 1000,
            timeout: Duration::from_secs(10),
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Why the `[alerts]` configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// `alerts.webhook_url` is not an `http://` or `https://` URL.
    #[error("alerts.webhook_url must be an http:// or https:// URL")]
    Scheme,
    /// `alerts.queue` or `alerts.attempts` is 0.
    #[error("alerts.{0} must be at least 1")]
    Zero(&'static str),
    /// A configured header is not one.
    #[error("alerts.webhook_headers {0:?}: not a valid header")]
    Header(String),
    /// The HTTP client could not be built.
    #[error("alerts: HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl AlertsConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), AlertsError> {
        if let Some(url) = &self.webhook_url
            && reqwest::Url::parse(url).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        {
            return Err(AlertsError::Scheme);
        }
        if self.queue == 0 {
            return Err(AlertsError::Zero("queue"));
        }
        if self.attempts == 0 {
            return Err(AlertsError::Zero("attempts"));
        }
        self.header_map().map(|_| ())
    }

    fn header_map(&self) -> Result<reqwest::header::HeaderMap, AlertsError> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &self.webhook_headers {
            let bad = || AlertsError::Header(name.clone());
            let name =
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| bad())?;
            headers.insert(name, value);
        }
        Ok(headers)
    }
}

/// The webhook's counters, read by the status and the self-metrics.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Findings the receiver answered 2xx.
    pub delivered: AtomicU64,
    /// Findings given up on: out of attempts, or refused with a 4xx other than 429.
    pub failed: AtomicU64,
    /// Findings dropped because the queue was full, or still queued when shutdown ran out of
    /// time.
    pub dropped: AtomicU64,
    /// Posts retried.
    pub retries: AtomicU64,
    /// Findings waiting in the queue.
    pub queue_depth: AtomicU64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Webhook {
    queue: mpsc::Sender<Arc<WindowFinding>>,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<super::ExportStats>,
    /// Whether the last offer dropped a finding, so a run of drops is logged once.
    dropping: std::sync::atomic::AtomicBool,
}

impl Webhook {
    /// Starts the delivery task on the current Tokio runtime when `webhook_url` is set.
    pub fn start(
        config: &AlertsConfig,
        stats: Arc<super::ExportStats>,
    ) -> Result<Option<Webhook>, AlertsError> {
        config.validate()?;
        let Some(url) = &config.webhook_url else { return Ok(None) };
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .default_headers(config.header_map()?)
            // A redirected POST turns into a GET; a receiver that moved is a failure to report.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(AlertsError::Client)?;
        let (queue, rx) = mpsc::channel(config.queue);
        let sender = Sender {
            client,
            url: url.clone(),
            host: host_of(url),
            policy: Backoff::of(config),
            stats: stats.clone(),
        };
        tracing::info!(host = %sender.host, "posting findings to the webhook");
        let task = tokio::spawn(sender.run(rx));
        Ok(Some(Webhook { queue, task, stats, dropping: Default::default() }))
    }

    /// Queues `findings` for delivery without waiting; what does not fit is dropped and counted.
    pub fn offer(&self, findings: &[Arc<WindowFinding>]) {
        for f in findings {
            // Counted before it is queued, so the task's decrement never comes first.
            self.stats.webhook.queue_depth.fetch_add(1, Ordering::Relaxed);
            match self.queue.try_send(f.clone()) {
                Ok(()) => self.dropping.store(false, Ordering::Relaxed),
                Err(_) => {
                    self.stats.webhook.queue_depth.fetch_sub(1, Ordering::Relaxed);
                    self.stats.webhook.dropped.fetch_add(1, Ordering::Relaxed);
                    if !self.dropping.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            kind = f.finding.kind,
                            interface = %f.interface_id,
                            "webhook queue full: dropping findings until it drains"
                        );
                    }
                }
            }
        }
    }

    /// Delivers what is queued within `budget`; what is still queued then is counted dropped.
    pub async fn finish(self, budget: Duration) {
        let Webhook { queue, mut task, stats, .. } = self;
        drop(queue);
        if tokio::time::timeout(budget, &mut task).await.is_err() {
            task.abort();
            // The abort lands at the task's next await; until it has, a post may still finish
            // and count itself.
            let _ = (&mut task).await;
            let left = stats.webhook.queue_depth.swap(0, Ordering::Relaxed);
            stats.webhook.dropped.fetch_add(left, Ordering::Relaxed);
            if left > 0 {
                tracing::warn!(findings = left, "shutdown: webhook findings not delivered");
            }
        }
    }
}

/// The host of a URL, the only part of it that is logged.
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// How long to wait before each retry.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    attempts: u32,
    first: Duration,
    max: Duration,
}

impl Backoff {
    fn of(config: &AlertsConfig) -> Backoff {
        Backoff { attempts: config.attempts, first: config.backoff, max: config.max_backoff }
    }

    /// The wait after the `failed`-th failed post (1-based), or the receiver's own ask.
    fn wait(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        let doubled = self.first.saturating_mul(1u32 << (failed - 1).min(16));
        retry_after.unwrap_or(doubled).min(self.max)
    }
}

/// What one post came to.
enum Outcome {
    Delivered,
    /// Worth another post, after the receiver's `Retry-After` if it gave one.
    Retry(String, Option<Duration>),
    Refused(String),
}

/// The delivery task's side.
struct Sender {
    client: reqwest::Client,
    url: String,
    host: String,
    policy: Backoff,
    stats: Arc<super::ExportStats>,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Arc<WindowFinding>>) {
        while let Some(finding) = rx.recv().await {
            let body = payload(&finding);
            self.deliver(&finding, body).await;
            self.stats.webhook.queue_depth.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Posts one finding until it is delivered, refused, or out of attempts.
    async fn deliver(&self, finding: &WindowFinding, body: Vec<u8>) {
        let mut failed = 0;
        loop {
            let why = match self.post(body.clone()).await {
                Outcome::Delivered => {
                    self.stats.webhook.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Outcome::Refused(why) => why,
                Outcome::Retry(why, retry_after) => {
                    failed += 1;
                    if failed < self.policy.attempts {
                        self.stats.webhook.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(host = %self.host, error = %why, "webhook post failed; retrying");
                        tokio::time::sleep(self.policy.wait(failed, retry_after)).await;
                        continue;
                    }
                    format!("{why} (after {failed} attempts)")
                }
            };
            self.stats.webhook.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                host = %self.host,
                kind = finding.finding.kind,
                interface = %finding.interface_id,
                error = %why,
                "webhook: finding not delivered"
            );
            return;
        }
    }

    async fn post(&self, body: Vec<u8>) -> Outcome {
        let request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let answer = match request.send().await {
            Ok(answer) => answer,
            // The error's text can hold the URL; name the kind of failure only.
            Err(e) if e.is_timeout() => return Outcome::Retry("timed out".into(), None),
            Err(e) if e.is_connect() => return Outcome::Retry("cannot connect".into(), None),
            Err(_) => return Outcome::Retry("request failed".into(), None),
        };
        let status = answer.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let why = format!("answered {}", status.as_u16());
        if status.is_server_error() {
            Outcome::Retry(why, None)
        } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let retry_after = answer
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Outcome::Retry(why, retry_after)
        } else {
            Outcome::Refused(why)
        }
    }
}

/// The JSON body of one finding.
#[derive(Serialize)]
struct Payload<'a> {
    event: &'static str,
    text: String,
    #[serde(flatten)]
    finding: &'a WindowFinding,
}

/// Serializes a finding with its `event` and `text`.
pub(crate) fn payload(f: &WindowFinding) -> Vec<u8> {
    let body = Payload { event: "vpcflowd.finding", text: text_of(f), finding: f };
    // A finding is strings and numbers only; serializing it cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The one-line summary chat tools show: kind, interface, where, when, and the detail.
fn text_of(f: &WindowFinding) -> String {
    let when =
        |t: u64| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string();
    let place = match (&f.region, &f.account_id) {
        (Some(r), Some(a)) => format!(" ({r}, {a})"),
        (Some(x), None) | (None, Some(x)) => format!(" ({x})"),
        (None, None) => String::new(),
    };
    format!(
        "vpcflowd {kind} on {interface}{place}, window {start} to {end}: {detail}",
        kind = f.finding.kind,
        interface = f.interface_id,
        start = when(f.window_start),
        end = when(f.window_end),
        detail = f.finding.detail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::findings::Finding;

    fn finding() -> WindowFinding {
        WindowFinding {
            window_start: 1_700_000_000,
            window_end: 1_700_000_300,
            interface_id: "eni-0aaa".into(),
            account_id: Some("123456789012".into()),
            region: Some("us-east-1".into()),
            finding: Finding {
                kind: "port_scan",
                subject: "198.51.100.66".into(),
                value: 140.0,
                threshold: 100.0,
                detail: "198.51.100.66 reached 140 distinct ports".into(),
            },
        }
    }

    #[test]
    fn the_body_carries_the_finding_and_a_slack_text() {
        let body: serde_json::Value = serde_json::from_slice(&payload(&finding())).unwrap();
        assert_eq!(body["event"], "vpcflowd.finding");
        assert_eq!(body["kind"], "port_scan");
        assert_eq!(body["subject"], "198.51.100.66");
        assert_eq!(body["value"], 140.0);
        assert_eq!(body["interface_id"], "eni-0aaa");
        assert_eq!(
            body["text"],
            "vpcflowd port_scan on eni-0aaa (us-east-1, 123456789012), window \
             2023-11-14T22:13:20Z to 2023-11-14T22:18:20Z: 198.51.100.66 reached 140 distinct ports"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_honours_retry_after_under_it() {
        let b = Backoff { attempts: 9, first: Duration::from_secs(1), max: Duration::from_secs(5) };
        let waits: Vec<u64> = (1..=5).map(|n| b.wait(n, None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(b.wait(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(b.wait(1, Some(Duration::from_secs(60))), Duration::from_secs(5));
        assert_eq!(b.wait(40, None), Duration::from_secs(5), "no overflow");
    }

    /// On a current-thread runtime the delivery task cannot run during `offer`: a queue of one
    /// takes the first finding and drops the other two, and shutdown drops the queued one.
    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_never_waits() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", closed.local_addr().unwrap());
        drop(closed);
        let config = AlertsConfig {
            webhook_url: Some(url),
            queue: 1,
            backoff: Duration::from_secs(3600),
            ..Default::default()
        };
        let stats = Arc::new(crate::export::ExportStats::default());
        let webhook = Webhook::start(&config, stats.clone()).unwrap().unwrap();
        let f = Arc::new(finding());
        webhook.offer(&[f.clone(), f.clone(), f]);
        assert_eq!(stats.webhook.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(stats.webhook.queue_depth.load(Ordering::Relaxed), 1);
        webhook.finish(Duration::from_millis(200)).await;
        assert_eq!(stats.webhook.dropped.load(Ordering::Relaxed), 3, "unsent at shutdown");
        assert_eq!(stats.webhook.queue_depth.load(Ordering::Relaxed), 0);
        assert_eq!(stats.webhook.delivered.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_configuration_is_checked() {
        let with = |url: &str| AlertsConfig { webhook_url: Some(url.into()), ..Default::default() };
        assert!(with("https://hooks.example.com/x").validate().is_ok());
        assert!(matches!(with("ftp://x").validate(), Err(AlertsError::Scheme)));
        assert!(matches!(with("not a url").validate(), Err(AlertsError::Scheme)));
        let zero = AlertsConfig { queue: 0, ..Default::default() };
        assert!(matches!(zero.validate(), Err(AlertsError::Zero("queue"))));
        let mut bad = AlertsConfig::default();
        bad.webhook_headers.insert("bad name".into(), "v".into());
        assert!(matches!(bad.validate(), Err(AlertsError::Header(_))));
        assert_eq!(host_of("https://hooks.slack.com/services/T0/B0/secret"), "hooks.slack.com");
    }
}
