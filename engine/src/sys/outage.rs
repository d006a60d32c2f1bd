//! State-change logs that do not flap: a dependency (Kinesis calls, a spool, segment writes,
//! Redis) is "failing" after a run of failures or a failure share over a window, and
//! "recovered" only after a quiet period; while failing, one summary line at most every
//! `summary_every`, with what happened since the last line.
//!
//! Without it, a dependency that fails one call in five (throttling, partial failures) logged
//! "failing" and "succeeds again" on every change: 23 lines in 3 seconds, a line every few
//! milliseconds at a real throttling rate. `Outage` is shared across threads (the sidecar's
//! tokio tasks), so its state sits behind a mutex taken once per outcome: a few per PutRecords
//! call, never per request.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a run of outcomes counts as an outage, and when it is over.
#[derive(Clone, Copy, Debug)]
pub struct OutageRule {
    /// This many failures in a row make the dependency failing.
    pub failures_in_a_row: u32,
    /// So does a failure share of at least `share_min` over at least `window_outcomes_min`
    /// outcomes in one `window`.
    pub share_min: f64,
    pub window_outcomes_min: u64,
    pub window: Duration,
    /// Failing ends after this long without a failure, the last outcome a success.
    pub quiet: Duration,
    /// While failing, at most one summary line this often.
    pub summary_every: Duration,
}

impl OutageRule {
    /// For calls to a service: 3 failures in a row, or a tenth of at least 20 calls in 10 s;
    /// recovered after 10 s without a failure; a summary every 10 s.
    pub const CALLS: OutageRule = OutageRule {
        failures_in_a_row: 3,
        share_min: 0.1,
        window_outcomes_min: 20,
        window: Duration::from_secs(10),
        quiet: Duration::from_secs(10),
        summary_every: Duration::from_secs(10),
    };

    /// For a condition that is already the outcome of retries (a spool in use, a lost
    /// connection, a failed disk write): the first failure, then as `CALLS`.
    pub const CONDITION: OutageRule = OutageRule {
        failures_in_a_row: 1,
        ..OutageRule::CALLS
    };
}

/// Counts since the last line: outcomes by kind (`ok`, or a failure's code) under a heading
/// (`calls`, `records refused`, `spooled`), printed as
/// `calls 120 (ok 96, ProvisionedThroughputExceededException 24); records refused 71 (…)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally(BTreeMap<&'static str, BTreeMap<String, u64>>);

impl Tally {
    fn add(&mut self, heading: &'static str, kind: &str, n: u64) {
        *self
            .0
            .entry(heading)
            .or_default()
            .entry(kind.to_string())
            .or_default() += n;
    }

    /// The count under `heading` and `kind`.
    pub fn get(&self, heading: &str, kind: &str) -> u64 {
        self.0
            .get(heading)
            .and_then(|k| k.get(kind))
            .copied()
            .unwrap_or(0)
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (heading, kinds)) in self.0.iter().enumerate() {
            let total: u64 = kinds.values().sum();
            let parts: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let sep = if i > 0 { "; " } else { "" };
            match parts.len() {
                1 if kinds.contains_key("") => write!(f, "{sep}{heading} {total}")?,
                _ => write!(f, "{sep}{heading} {total} ({})", parts.join(", "))?,
            }
        }
        Ok(())
    }
}

/// A line to log, with the counts since the previous one.
#[derive(Clone, Debug, PartialEq)]
pub enum OutageLine {
    /// The dependency became failing; `cause` is the failure that tipped it.
    Failing { cause: String, tally: Tally },
    /// Still failing: the periodic summary.
    Still { last_cause: String, tally: Tally },
    /// Recovered after failing for `lasted`.
    Recovered { lasted: Duration, tally: Tally },
}

#[derive(Default)]
struct State {
    failing_since: Option<Instant>,
    in_a_row: u32,
    window_start: Option<Instant>,
    window_outcomes: u64,
    window_failures: u64,
    last_failure: Option<Instant>,
    last_cause: String,
    last_ok: bool,
    last_line: Option<Instant>,
    tally: Tally,
}

/// One dependency's outage state.
pub struct Outage {
    rule: OutageRule,
    heading: &'static str,
    state: Mutex<State>,
}

impl Outage {
    /// Outcomes are counted under `heading` (e.g. `calls`).
    pub fn new(rule: OutageRule, heading: &'static str) -> Self {
        assert!(rule.failures_in_a_row > 0 && rule.window_outcomes_min > 0);
        Outage {
            rule,
            heading,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether the dependency is failing now.
    pub fn is_failing(&self) -> bool {
        self.lock().failing_since.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// A success at `now`.
    pub fn ok_at(&self, now: Instant) -> Option<OutageLine> {
        let mut s = self.lock();
        s.in_a_row = 0;
        s.last_ok = true;
        self.count(&mut s, now, false);
        s.tally.add(self.heading, "ok", 1);
        self.due(&mut s, now)
    }

    /// A failure at `now`, with its code or cause (`ProvisionedThroughputExceededException`).
    pub fn failed_at(&self, now: Instant, cause: &str) -> Option<OutageLine> {
        let mut s = self.lock();
        s.in_a_row += 1;
        s.last_ok = false;
        s.last_failure = Some(now);
        s.last_cause = cause.to_string();
        self.count(&mut s, now, true);
        s.tally.add(self.heading, cause, 1);
        let r = &self.rule;
        let share = s.window_failures as f64 / s.window_outcomes as f64;
        let tipped = s.in_a_row >= r.failures_in_a_row
            || (s.window_outcomes >= r.window_outcomes_min && share >= r.share_min);
        if s.failing_since.is_none() && tipped {
            s.failing_since = Some(now);
            s.last_line = Some(now);
            let tally = std::mem::take(&mut s.tally);
            return Some(OutageLine::Failing {
                cause: cause.to_string(),
                tally,
            });
        }
        self.due(&mut s, now)
    }

    /// Counts `n` of something that goes with the outcomes (records refused by code,
    /// records spooled) into the next line; changes no state.
    pub fn note(&self, heading: &'static str, kind: &str, n: u64) {
        if n > 0 {
            self.lock().tally.add(heading, kind, n);
        }
    }

    /// Time passing without outcomes: a due summary, or the end of a quiet period.
    pub fn tick_at(&self, now: Instant) -> Option<OutageLine> {
        let mut s = self.lock();
        self.due(&mut s, now)
    }

    pub fn ok(&self) -> Option<OutageLine> {
        self.ok_at(Instant::now())
    }

    pub fn failed(&self, cause: &str) -> Option<OutageLine> {
        self.failed_at(Instant::now(), cause)
    }

    pub fn tick(&self) -> Option<OutageLine> {
        self.tick_at(Instant::now())
    }

    fn count(&self, s: &mut State, now: Instant, failed: bool) {
        let fresh = s
            .window_start
            .is_none_or(|at| now.duration_since(at) >= self.rule.window);
        if fresh {
            s.window_start = Some(now);
            s.window_outcomes = 0;
            s.window_failures = 0;
        }
        s.window_outcomes += 1;
        s.window_failures += u64::from(failed);
    }

    /// The line due at `now` while failing: recovered, or a summary.
    fn due(&self, s: &mut State, now: Instant) -> Option<OutageLine> {
        let since = s.failing_since?;
        let quiet = s
            .last_failure
            .is_none_or(|at| now.duration_since(at) >= self.rule.quiet);
        if s.last_ok && quiet {
            s.failing_since = None;
            s.last_line = Some(now);
            return Some(OutageLine::Recovered {
                lasted: now.duration_since(since),
                tally: std::mem::take(&mut s.tally),
            });
        }
        let summary_due = s
            .last_line
            .is_none_or(|at| now.duration_since(at) >= self.rule.summary_every);
        if summary_due {
            s.last_line = Some(now);
            return Some(OutageLine::Still {
                last_cause: s.last_cause.clone(),
                tally: std::mem::take(&mut s.tally),
            });
        }
        None
    }
}

/// Logs an `OutageLine` under `target` with one of three messages, and any extra tracing
/// fields after a `;`: `warn` while failing, `info` when recovered. The line's counts go in
/// `counts`, its cause in `cause` (`last_cause` in a summary).
#[macro_export]
macro_rules! log_outage {
    (
        target: $target:expr, $line:expr,
        failing: $failing:expr, still: $still:expr, recovered: $recovered:expr
        $(; $($field:tt)+)?
    ) => {
        match $line {
            $crate::OutageLine::Failing { cause, tally } => $crate::__tracing::warn!(
                target: $target, $($($field)+ ,)? cause = %cause, counts = %tally, $failing
            ),
            $crate::OutageLine::Still { last_cause, tally } => $crate::__tracing::warn!(
                target: $target, $($($field)+ ,)? last_cause = %last_cause, counts = %tally,
                $still
            ),
            $crate::OutageLine::Recovered { lasted, tally } => $crate::__tracing::info!(
                target: $target, $($($field)+ ,)? failing_secs = lasted.as_secs(),
                counts = %tally, $recovered
            ),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn one_failure_in_five_is_one_outage_not_a_line_per_change() {
        let o = Outage::new(OutageRule::CALLS, "calls");
        let t0 = Instant::now();
        let mut lines = Vec::new();
        // 3 s of calls every 10 ms, every 5th failing: what flapped 23 times before.
        for i in 0..300u64 {
            let now = at(t0, i * 10);
            let line = match i % 5 {
                4 => o.failed_at(now, "ProvisionedThroughputExceededException"),
                _ => o.ok_at(now),
            };
            lines.extend(line);
        }
        assert_eq!(lines.len(), 1, "{lines:?}");
        let OutageLine::Failing { tally, .. } = &lines[0] else {
            panic!("{lines:?}")
        };
        // Tipped by the share: the 4th failure in 20 calls.
        assert_eq!(
            tally.get("calls", "ProvisionedThroughputExceededException"),
            4
        );
        assert_eq!(tally.get("calls", "ok"), 16);
        assert!(o.is_failing());
        // The faults go on: one summary each 10 s, with what happened since the last line.
        let mut summaries = Vec::new();
        for i in 300..2500u64 {
            let now = at(t0, i * 10);
            let line = match i % 5 {
                4 => o.failed_at(now, "ProvisionedThroughputExceededException"),
                _ => o.ok_at(now),
            };
            summaries.extend(line);
        }
        assert_eq!(summaries.len(), 2, "{summaries:?}");
        let OutageLine::Still { tally, .. } = &summaries[0] else {
            panic!("{summaries:?}")
        };
        assert_eq!(
            tally.get("calls", "ok") + tally.get("calls", "ProvisionedThroughputExceededException"),
            1000
        );
        // The faults stop at 25 s: one more summary is due at 30 s, and the recovery comes
        // once 10 s pass without a failure.
        let mut end = Vec::new();
        for i in 2500..4000u64 {
            end.extend(o.ok_at(at(t0, i * 10)));
        }
        assert!(
            matches!(
                end.as_slice(),
                [OutageLine::Still { .. }, OutageLine::Recovered { .. }]
            ),
            "{end:?}"
        );
        assert!(!o.is_failing());
    }

    #[test]
    fn a_lone_failure_is_counted_not_logged_and_a_condition_logs_at_once() {
        let calls = Outage::new(OutageRule::CALLS, "calls");
        let t0 = Instant::now();
        assert_eq!(calls.failed_at(t0, "timeout"), None);
        assert_eq!(calls.ok_at(at(t0, 10)), None);
        assert!(!calls.is_failing());

        let spool = Outage::new(OutageRule::CONDITION, "spooled batches");
        spool.note("records", "", 500);
        let first = spool.failed_at(t0, "Kinesis has no room");
        assert!(
            matches!(&first, Some(OutageLine::Failing { tally, .. }) if tally.get("records", "") == 500)
        );
        // Still in use (no success): no recovery however long it stays quiet.
        assert!(matches!(
            spool.tick_at(at(t0, 20_000)),
            Some(OutageLine::Still { .. })
        ));
        assert_eq!(spool.tick_at(at(t0, 21_000)), None);
        assert_eq!(
            spool.ok_at(at(t0, 22_000)),
            Some(OutageLine::Recovered {
                lasted: Duration::from_secs(22),
                tally: {
                    let mut t = Tally::default();
                    t.add("spooled batches", "ok", 1);
                    t
                },
            })
        );
    }

    #[test]
    fn a_tally_reads_as_counts_by_kind() {
        let mut t = Tally::default();
        t.add("calls", "ok", 96);
        t.add("calls", "Throttled", 24);
        t.add("spooled", "", 3);
        assert_eq!(t.to_string(), "calls 120 (Throttled 24, ok 96); spooled 3");
    }
}
