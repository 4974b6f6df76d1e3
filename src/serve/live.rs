//! The live feed of the admin listener: `GET /api/v1/events` (server-sent events),
//! `GET /api/v1/open` and `GET /api/v1/interfaces/{id}/open` (the provisional totals of the
//! windows still open).
//!
//! This module owns the [`EventHub`]: the snapshot consumer publishes a `window_closed` event per
//! closed window and a `finding` event per newly raised finding; every subscriber gets them in
//! that order. An event's id is `<boot>-<seq>`, `boot` being the process's start (Unix ms). The
//! hub keeps the newest [`EVENT_BACKLOG`] events, so a browser that reconnects with
//! `Last-Event-ID` gets what it missed. When it cannot (another process answered, or it
//! missed more than the backlog holds), its first event, `hello`, says `"resync": true` and
//! the page fetches everything again. A subscriber that falls behind the broadcast by more
//! than the backlog gets a `resync` event instead of the events it lost.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};
use tokio_stream::{Stream, StreamExt};

use super::http::ServeContext;
use crate::window::Snapshot;
use crate::window::findings::WindowFinding;

/// Events the hub keeps for reconnecting subscribers.
pub(crate) const EVENT_BACKLOG: usize = 4096;

/// How often an idle stream gets a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event of the feed.
#[derive(Debug)]
pub struct LiveEvent {
    pub seq: u64,
    /// `window_closed` or `finding`.
    pub kind: &'static str,
    /// The event's JSON.
    pub data: String,
}

/// See the module documentation.
#[derive(Debug)]
pub struct EventHub {
    boot: u64,
    inner: Mutex<Backlog>,
    tx: broadcast::Sender<Arc<LiveEvent>>,
    /// Set at shutdown: every stream ends cleanly, so browsers reconnect to the next process.
    closing: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Backlog {
    next: u64,
    events: VecDeque<Arc<LiveEvent>>,
}

/// What a new subscriber starts from.
pub struct Subscription {
    /// Whether the subscriber must fetch everything again (it missed events no one kept).
    pub resync: bool,
    /// The kept events after its `Last-Event-ID`.
    pub missed: Vec<Arc<LiveEvent>>,
    pub live: broadcast::Receiver<Arc<LiveEvent>>,
}

impl EventHub {
    pub fn new() -> EventHub {
        let boot = crate::clock::unix_millis();
        EventHub {
            boot,
            inner: Mutex::default(),
            tx: broadcast::channel(EVENT_BACKLOG).0,
            closing: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Ends every stream (at shutdown); streams opened later end at once.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Sends `data` as a `kind` event to every subscriber and keeps it in the backlog.
    pub fn publish(&self, kind: &'static str, data: String) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let event = Arc::new(LiveEvent { seq: inner.next, kind, data });
        inner.next += 1;
        inner.events.push_back(event.clone());
        if inner.events.len() > EVENT_BACKLOG {
            inner.events.pop_front();
        }
        // Sent under the lock, so that a subscriber's backlog and its live events neither
        // overlap nor leave a gap. No subscriber is not an error.
        let _ = self.tx.send(event);
    }

    /// Publishes what a batch of closed snapshots means to a page: one `window_closed` per
    /// window (with its interface count and bytes), then each raised finding.
    pub fn publish_batch(&self, batch: &[Arc<Snapshot>], raised: &[Arc<WindowFinding>]) {
        let mut windows: Vec<(u64, u64, u64, u64, bool)> = Vec::new();
        for s in batch {
            match windows.iter_mut().find(|w| w.0 == s.window_start) {
                Some(w) => {
                    w.2 += 1;
                    w.3 += s.bytes;
                    w.4 |= s.revision > 0;
                }
                None => windows.push((s.window_start, s.window_end, 1, s.bytes, s.revision > 0)),
            }
        }
        for (start, end, interfaces, bytes, corrected) in windows {
            let data = json!({"window_start": start, "window_end": end,
                "interfaces": interfaces, "bytes": bytes, "corrected": corrected});
            self.publish("window_closed", data.to_string());
        }
        for f in raised {
            if let Ok(data) = serde_json::to_string(&**f) {
                self.publish("finding", data);
            }
        }
    }

    /// Subscribes a client that last saw `last_event_id` (the `Last-Event-ID` header).
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Subscription {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.tx.subscribe();
        let Some(last) = last_event_id else {
            return Subscription { resync: false, missed: Vec::new(), live };
        };
        let seen = last
            .split_once('-')
            .filter(|(boot, _)| boot.parse() == Ok(self.boot))
            .and_then(|(_, seq)| seq.parse::<u64>().ok());
        let oldest = inner.events.front().map_or(inner.next, |e| e.seq);
        match seen {
            Some(seq) if seq >= oldest.saturating_sub(1) && seq < inner.next => Subscription {
                resync: false,
                missed: inner.events.iter().filter(|e| e.seq > seq).cloned().collect(),
                live,
            },
            _ => Subscription { resync: true, missed: Vec::new(), live },
        }
    }

    fn id_of(&self, e: &LiveEvent) -> String {
        format!("{}-{}", self.boot, e.seq)
    }
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub::new()
    }
}

/// `GET /api/v1/events`.
pub(super) async fn events(
    State(state): State<Arc<ServeContext>>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let hub = state.events.clone();
    let Subscription { resync, missed, live } = hub.subscribe(last);
    let hello =
        json!({"boot": hub.boot, "resync": resync, "latest_window": state.store.latest_window()});
    let hello = Event::default().event("hello").data(hello.to_string());
    let to_event = {
        let hub = hub.clone();
        move |e: &LiveEvent| Event::default().id(hub.id_of(e)).event(e.kind).data(&e.data)
    };
    let missed: Vec<Event> = missed.iter().map(|e| to_event(e)).collect();
    let live = BroadcastStream::new(live).map(move |received| match received {
        Ok(e) => to_event(&e),
        // Fell behind by more than the channel holds: the page fetches everything again.
        Err(_) => Event::default().event("resync").data("{}"),
    });
    // The stream ends (cleanly, with the last chunk) when the hub closes.
    let closed = WatchStream::new(hub.closing.subscribe()).filter(|&c| c).map(|_| None);
    let stream = tokio_stream::once(hello)
        .chain(tokio_stream::iter(missed))
        .chain(live)
        .map(Some)
        .merge(closed)
        .take_while(Option::is_some)
        .filter_map(|e| e.map(Ok));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// `GET /api/v1/open`: every interface's newest open window (totals only).
pub(super) async fn open_all(State(state): State<Arc<ServeContext>>) -> Response {
    let wm = watermark(&state);
    let open = state.open.clone();
    match tokio::task::spawn_blocking(move || open.newest_of_all(wm)).await {
        Ok(all) => axum::Json(all).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /api/v1/interfaces/{id}/open`: the interface's open windows, oldest first, with their
/// largest sources so far.
pub(super) async fn open_interface(
    State(state): State<Arc<ServeContext>>,
    Path(id): Path<String>,
) -> Response {
    let wm = watermark(&state);
    let open = state.open.clone();
    match tokio::task::spawn_blocking(move || open.of(&id, wm)).await {
        Ok(Some(windows)) => axum::Json(windows).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such interface\n").into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The engine's watermark, `None` before the first record.
fn watermark(state: &ServeContext) -> Option<u64> {
    Some(state.engine.watermark.load(Ordering::Relaxed)).filter(|&w| w != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_gets_what_it_missed_or_is_told_to_resync() {
        let hub = EventHub::new();
        for i in 0..3 {
            hub.publish("finding", format!("{{\"n\":{i}}}"));
        }
        let first = hub.id_of(&LiveEvent { seq: 0, kind: "", data: String::new() });
        let sub = hub.subscribe(Some(&first));
        assert!(!sub.resync);
        assert_eq!(sub.missed.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        let newest = format!("{}-2", hub.boot);
        assert!(hub.subscribe(Some(&newest)).missed.is_empty());
        assert!(!hub.subscribe(None).resync, "a first connection needs no resync");
        assert!(hub.subscribe(Some("1-0")).resync, "another process's id");
        assert!(hub.subscribe(Some(&format!("{}-9", hub.boot))).resync, "an id never sent");
        assert!(hub.subscribe(Some("garbage")).resync);
    }

    #[test]
    fn the_backlog_is_bounded_and_an_older_id_resyncs() {
        let hub = EventHub::new();
        for _ in 0..EVENT_BACKLOG + 10 {
            hub.publish("window_closed", "{}".into());
        }
        assert!(hub.subscribe(Some(&format!("{}-0", hub.boot))).resync);
        let kept = hub.subscribe(Some(&format!("{}-9", hub.boot)));
        assert!(!kept.resync);
        assert_eq!(kept.missed.len(), EVENT_BACKLOG);
    }

    #[tokio::test]
    async fn live_events_come_in_publish_order() {
        let hub = EventHub::new();
        let mut sub = hub.subscribe(None);
        hub.publish("window_closed", "{}".into());
        hub.publish("finding", "{}".into());
        assert_eq!(sub.live.recv().await.unwrap().kind, "window_closed");
        assert_eq!(sub.live.recv().await.unwrap().kind, "finding");
    }
}
