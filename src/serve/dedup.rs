//! Request-id deduplication: Firehose retries a request with the same id (best effort) when it
//! did not get a 200, so a request id already applied is answered 200 without counting again.
//!
//! The memory is bounded in time (`dedup_ttl`) and size (`dedup_max_entries`, oldest first).
//! A request whose id is still being applied is "in flight": a concurrent retry is answered 503
//! and retried later, when it finds the id applied. Empty ids are never deduplicated.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a request id's claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The id was not seen and is in flight from this claim on; call [`Dedup::complete`] or
    /// [`Dedup::abandon`].
    New,
    /// The id is already applied: answer 200 and count nothing.
    Applied,
    /// Another request is applying the id right now.
    InFlight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    /// Applied at this wall-clock time (Unix milliseconds).
    Applied(u64),
}

#[derive(Debug, Default)]
struct Inner {
    ids: HashMap<String, State>,
    /// Applied ids, oldest first.
    order: VecDeque<(u64, String)>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Dedup {
    inner: Mutex<Inner>,
    ttl_ms: u64,
    max_entries: usize,
    pub hits: AtomicU64,
}

impl Dedup {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Dedup {
            inner: Mutex::default(),
            ttl_ms: ttl.as_millis() as u64,
            max_entries: max_entries.max(1),
            hits: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `id` at time `now_ms`.
    pub fn claim(&self, id: &str, now_ms: u64) -> Claim {
        if id.is_empty() {
            return Claim::New;
        }
        let mut inner = self.lock();
        self.expire(&mut inner, now_ms);
        match inner.ids.get(id) {
            Some(State::Applied(_)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Claim::Applied
            }
            Some(State::InFlight) => Claim::InFlight,
            None => {
                inner.ids.insert(id.to_string(), State::InFlight);
                Claim::New
            }
        }
    }

    /// Marks a claimed id applied.
    pub fn complete(&self, id: &str, now_ms: u64) {
        if id.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner.ids.insert(id.to_string(), State::Applied(now_ms));
        inner.order.push_back((now_ms, id.to_string()));
        self.expire(&mut inner, now_ms);
    }

    /// Whether `id` is known as applied (a request replayed from the write-ahead log while its
    /// retry was already queued).
    pub fn is_applied(&self, id: &str) -> bool {
        !id.is_empty() && matches!(self.lock().ids.get(id), Some(State::Applied(_)))
    }

    /// Releases a claimed id that was not applied (so that a retry is applied).
    pub fn abandon(&self, id: &str) {
        let mut inner = self.lock();
        if inner.ids.get(id) == Some(&State::InFlight) {
            inner.ids.remove(id);
        }
    }

    fn expire(&self, inner: &mut Inner, now_ms: u64) {
        while let Some((at, _)) = inner.order.front() {
            let too_old = now_ms.saturating_sub(*at) > self.ttl_ms;
            if !too_old && inner.order.len() <= self.max_entries {
                break;
            }
            let (at, id) = inner.order.pop_front().expect("front exists");
            // Only forget it if this entry is its latest application.
            if inner.ids.get(&id) == Some(&State::Applied(at)) {
                inner.ids.remove(&id);
            }
        }
    }

    /// How many applied ids are remembered.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The applied ids with their times, oldest first (for the state file).
    pub fn export(&self) -> Vec<(u64, String)> {
        self.lock().order.iter().cloned().collect()
    }

    /// Restores ids exported earlier.
    pub fn import(&self, entries: Vec<(u64, String)>, now_ms: u64) {
        let mut inner = self.lock();
        for (at, id) in entries {
            inner.ids.insert(id.clone(), State::Applied(at));
            inner.order.push_back((at, id));
        }
        self.expire(&mut inner, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_ids_are_answered_without_counting_again() {
        let d = Dedup::new(Duration::from_secs(10), 100);
        assert_eq!(d.claim("a", 0), Claim::New);
        assert_eq!(d.claim("a", 1), Claim::InFlight);
        d.complete("a", 2);
        assert_eq!(d.claim("a", 3), Claim::Applied);
        assert_eq!(d.hits.load(Ordering::Relaxed), 1);
        assert_eq!(d.claim("", 3), Claim::New);
        assert_eq!(d.claim("", 3), Claim::New, "empty ids are never deduplicated");
    }

    #[test]
    fn abandoned_claims_can_be_retried() {
        let d = Dedup::new(Duration::from_secs(10), 100);
        assert_eq!(d.claim("a", 0), Claim::New);
        d.abandon("a");
        assert_eq!(d.claim("a", 1), Claim::New);
    }

    #[test]
    fn memory_is_bounded_in_time_and_size() {
        let d = Dedup::new(Duration::from_millis(100), 3);
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            assert_eq!(d.claim(id, i as u64), Claim::New);
            d.complete(id, i as u64);
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.claim("a", 5), Claim::New, "the oldest was forgotten by size");
        d.abandon("a");
        assert_eq!(d.claim("d", 50), Claim::Applied);
        assert_eq!(d.claim("d", 200), Claim::New, "forgotten after the ttl");
    }
}
