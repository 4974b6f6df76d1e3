//! This module defines windows, panes, event time and the watermark.
//!
//! Time is in whole Unix seconds. A **pane** is one slide-width interval `[p·S, (p+1)·S)`,
//! numbered `p`. A **window** `[k·S, k·S + W)` is the sum of the `W/S` panes `k … k+W/S−1`; it is
//! named by its first pane. Windows are aligned to multiples of the slide since the epoch.
//!
//! The **watermark** is the largest event time seen minus the lateness (and, after an idle
//! period, moves on with the wall clock). A window closes when the watermark reaches its end; a
//! pane is **sealed** once the first window containing it has closed (watermark ≥ pane end), and
//! a record for a sealed pane is late.

use std::time::Duration;

#[cfg(test)]
use crate::decode::FlowRecord;

/// A pane number: `floor(t / slide)`.
pub(crate) type PaneId = u64;

/// Window length and slide, both whole seconds, the window a multiple of the slide.
/// (It is deserialized only from state files, which are checked against the configured spec.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowSpec {
    #[serde(rename = "window_secs")]
    window: u64,
    #[serde(rename = "slide_secs")]
    slide: u64,
}

/// Window options that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("--slide must be a whole number of seconds, at least 1s (got {0:?})")]
    Slide(Duration),
    #[error("--window ({window:?}) must be a whole multiple of --slide ({slide:?})")]
    NotAMultiple { window: Duration, slide: Duration },
    #[error("--window / --slide must be at most 1440 panes (got {0})")]
    TooManyPanes(u64),
}

impl WindowSpec {
    pub fn new(window: Duration, slide: Duration) -> Result<Self, SpecError> {
        if slide.subsec_nanos() != 0 || slide.as_secs() == 0 {
            return Err(SpecError::Slide(slide));
        }
        let (w, s) = (window.as_secs(), slide.as_secs());
        if window.subsec_nanos() != 0 || w == 0 || w % s != 0 {
            return Err(SpecError::NotAMultiple { window, slide });
        }
        if w / s > 1440 {
            return Err(SpecError::TooManyPanes(w / s));
        }
        Ok(WindowSpec { window: w, slide: s })
    }

    pub fn window(&self) -> u64 {
        self.window
    }

    pub fn slide(&self) -> u64 {
        self.slide
    }

    /// Panes per window.
    pub fn panes(&self) -> u64 {
        self.window / self.slide
    }

    /// The pane holding time `t`.
    #[inline]
    pub fn pane_of(&self, t: u64) -> PaneId {
        t / self.slide
    }

    pub fn pane_start(&self, p: PaneId) -> u64 {
        p.saturating_mul(self.slide)
    }

    pub fn pane_end(&self, p: PaneId) -> u64 {
        p.saturating_add(1).saturating_mul(self.slide)
    }

    /// The end of the window whose first pane is `k`.
    pub fn window_end(&self, k: PaneId) -> u64 {
        self.pane_start(k).saturating_add(self.window)
    }

    /// The first panes of the windows that contain pane `p`, oldest first.
    pub fn windows_containing(&self, p: PaneId) -> std::ops::RangeInclusive<PaneId> {
        p.saturating_sub(self.panes() - 1)..=p
    }

    /// Returns the first pane of the newest window that has closed once the watermark is `wm`
    /// (the windows `k` with `window_end(k) <= wm`), if any.
    pub fn last_closed_window(&self, wm: u64) -> Option<PaneId> {
        // window_end(k) <= wm  <=>  (k + n)·S <= wm  <=>  k <= wm/S − n
        (wm / self.slide).checked_sub(self.panes())
    }

    /// Whether pane `p` is sealed (its first window has closed) at watermark `wm`.
    #[inline]
    pub fn is_sealed(&self, p: PaneId, wm: Option<u64>) -> bool {
        wm.is_some_and(|wm| self.pane_end(p) <= wm)
    }
}

/// Which record time windows follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeMode {
    /// The record's own time (`start`, or `end` with `--time-field end`).
    #[default]
    Event,
    /// The time the record arrived.
    Processing,
}

/// Which record field is the event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeField {
    #[default]
    Start,
    End,
}

/// Values at or above this are milliseconds (10^11 s is the year 5138; 10^11 ms is 1973).
const MILLIS_THRESHOLD: u64 = 100_000_000_000;

/// Seconds from a raw `start`/`end` value, which is sometimes in milliseconds despite the docs.
#[inline]
pub(crate) fn normalise_seconds(raw: u64) -> u64 {
    if raw >= MILLIS_THRESHOLD { raw / 1000 } else { raw }
}

/// The event time of a record: the chosen field, else the other one, else `arrival`.
#[inline]
#[cfg(test)]
pub(crate) fn event_time(
    record: &FlowRecord<'_>,
    mode: TimeMode,
    field: TimeField,
    arrival: u64,
) -> u64 {
    event_time_of(record.start, record.end, mode, field, arrival)
}

/// Computes [`event_time`] from a record's `start` and `end`.
#[inline]
pub(crate) fn event_time_of(
    start: Option<u64>,
    end: Option<u64>,
    mode: TimeMode,
    field: TimeField,
    arrival: u64,
) -> u64 {
    if mode == TimeMode::Processing {
        return arrival;
    }
    let (first, second) = match field {
        TimeField::Start => (start, end),
        TimeField::End => (end, start),
    };
    first.or(second).map_or(arrival, normalise_seconds)
}

/// The watermark: largest event time seen minus the lateness, never moving back.
///
/// ```
/// use vpcflowd::window::Watermark;
/// let mut wm = Watermark::new(600);
/// assert_eq!(wm.get(), None);
/// wm.observe(1_000);
/// assert_eq!(wm.get(), Some(400));
/// wm.observe(900); // older events never move it back
/// assert_eq!(wm.get(), Some(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Watermark {
    lateness: u64,
    max_event: Option<u64>,
    value: Option<u64>,
}

impl Watermark {
    pub fn new(lateness: u64) -> Self {
        Watermark { lateness, max_event: None, value: None }
    }

    /// The current watermark, `None` before any record.
    pub fn get(&self) -> Option<u64> {
        self.value
    }

    /// Takes a record's event time into account.
    #[inline]
    pub fn observe(&mut self, t: u64) {
        if self.max_event.is_none_or(|m| t > m) {
            self.max_event = Some(t);
            self.advance_to(t.saturating_sub(self.lateness));
        }
    }

    /// Moves the watermark after `idle` seconds without records: the event clock is taken to have
    /// moved on with the wall clock since the last record, so the watermark becomes
    /// `max_event + idle − lateness`.
    pub fn idle_for(&mut self, idle: u64) {
        if let Some(m) = self.max_event {
            self.advance_to(m.saturating_add(idle).saturating_sub(self.lateness));
        }
    }

    /// Moves the watermark forward to `t` (never back).
    pub fn advance_to(&mut self, t: u64) {
        if self.value.is_none_or(|v| t > v) {
            self.value = Some(t);
        }
    }

    /// Closes everything, as at the end of a replay.
    pub fn finish(&mut self) {
        self.value = Some(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(w: u64, s: u64) -> WindowSpec {
        WindowSpec::new(Duration::from_secs(w), Duration::from_secs(s)).unwrap()
    }

    #[test]
    fn spec_validation() {
        assert!(WindowSpec::new(Duration::from_secs(300), Duration::from_secs(60)).is_ok());
        assert!(WindowSpec::new(Duration::from_secs(300), Duration::from_secs(70)).is_err());
        assert!(WindowSpec::new(Duration::from_secs(300), Duration::from_millis(1500)).is_err());
        assert!(WindowSpec::new(Duration::from_secs(0), Duration::from_secs(60)).is_err());
    }

    #[test]
    fn panes_and_windows_are_aligned_to_the_slide() {
        let s = spec(300, 60);
        assert_eq!(s.pane_of(1_700_000_000), 28_333_333);
        assert_eq!(s.pane_start(28_333_333), 1_699_999_980);
        assert_eq!(s.windows_containing(10), 6..=10);
        assert_eq!(s.windows_containing(2), 0..=2);
        assert_eq!(s.window_end(6), 660);
        // Windows ending at or before the watermark have closed.
        assert_eq!(s.last_closed_window(659), Some(5));
        assert_eq!(s.last_closed_window(660), Some(6));
        assert_eq!(s.last_closed_window(299), None);
        assert!(s.is_sealed(10, Some(660)) && !s.is_sealed(10, Some(659)));
        assert!(!s.is_sealed(0, None));
    }

    #[test]
    fn milliseconds_are_normalised() {
        assert_eq!(normalise_seconds(1_512_564_058_000), 1_512_564_058);
        assert_eq!(normalise_seconds(1_512_564_058), 1_512_564_058);
        assert_eq!(normalise_seconds(4_102_444_800), 4_102_444_800, "2100 in seconds stays");
    }

    #[test]
    fn event_time_falls_back_to_the_other_field_then_arrival() {
        let mut r = FlowRecord { start: Some(100), end: Some(160), ..Default::default() };
        assert_eq!(event_time(&r, TimeMode::Event, TimeField::Start, 9), 100);
        assert_eq!(event_time(&r, TimeMode::Event, TimeField::End, 9), 160);
        assert_eq!(event_time(&r, TimeMode::Processing, TimeField::Start, 9), 9);
        r.end = None;
        assert_eq!(event_time(&r, TimeMode::Event, TimeField::End, 9), 100);
        r.start = None;
        assert_eq!(event_time(&r, TimeMode::Event, TimeField::Start, 9), 9);
    }

    #[test]
    fn idle_moves_the_watermark_with_the_wall_clock() {
        let mut wm = Watermark::new(600);
        wm.idle_for(1000);
        assert_eq!(wm.get(), None, "no records, nothing to move from");
        wm.observe(10_000);
        wm.idle_for(120);
        assert_eq!(wm.get(), Some(10_000 + 120 - 600));
        wm.finish();
        assert_eq!(wm.get(), Some(u64::MAX));
    }
}
