//! Rate-limited warnings: a condition that can repeat thousands of times a second (accept
//! failures, refused connections) is logged at most once per interval, with how many times it
//! happened since the last line.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// One call site's limiter; `!Sync`, one per shard.
pub struct LogEvery {
    every: Duration,
    last: Cell<Option<Instant>>,
    suppressed: Cell<u64>,
}

impl LogEvery {
    pub const fn new(every: Duration) -> Self {
        LogEvery {
            every,
            last: Cell::new(None),
            suppressed: Cell::new(0),
        }
    }

    /// `Some(n)` when a line is due now, `n` being the occurrences not logged since the last
    /// line; `None` when this occurrence is only counted.
    pub fn due(&self) -> Option<u64> {
        let now = Instant::now();
        match self.last.get() {
            Some(at) if now.duration_since(at) < self.every => {
                self.suppressed.set(self.suppressed.get() + 1);
                None
            }
            _ => {
                self.last.set(Some(now));
                Some(self.suppressed.replace(0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_in_between() {
        let limit = LogEvery::new(Duration::from_millis(50));
        assert_eq!(limit.due(), Some(0));
        assert_eq!(limit.due(), None);
        assert_eq!(limit.due(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(limit.due(), Some(2));
    }
}
