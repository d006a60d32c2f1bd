//! The request path's clock. A request reads the monotonic clock once, when it arrives; from
//! that one reading come both the L1's milliseconds (`mono_ms`) and the event's wall-clock
//! time (`wall_ms`, from a per-thread pair of monotonic and wall-clock readings taken together
//! and renewed by `reanchor`, which each shard calls every 100 ms so a stepped system clock is
//! followed within that).

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static START: OnceLock<Instant> = OnceLock::new();

thread_local! {
    static WALL_ANCHOR: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
}

/// Milliseconds from the first call in this process to `at`: a monotonic, cheap clock.
pub fn mono_ms(at: Instant) -> u64 {
    at.saturating_duration_since(*START.get_or_init(Instant::now))
        .as_millis() as u64
}

/// `mono_ms` of now.
pub fn now_ms() -> u64 {
    mono_ms(Instant::now())
}

/// Milliseconds since the Unix epoch at `at`.
pub fn wall_ms(at: Instant) -> u64 {
    let (mono, wall) = WALL_ANCHOR.get().unwrap_or_else(reanchor);
    match at.checked_duration_since(mono) {
        Some(after) => wall + after.as_millis() as u64,
        None => wall.saturating_sub(mono.duration_since(at).as_millis() as u64),
    }
}

/// Reads both clocks afresh for this thread's `wall_ms`.
pub fn reanchor() -> (Instant, u64) {
    let mono = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    WALL_ANCHOR.set(Some((mono, wall)));
    (mono, wall)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wall_time_follows_the_monotonic_reading() {
        let (mono, wall) = reanchor();
        assert_eq!(wall_ms(mono), wall);
        assert_eq!(wall_ms(mono + Duration::from_millis(1500)), wall + 1500);
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(wall_ms(Instant::now()).abs_diff(system) < 50);
        assert!(mono_ms(Instant::now()) >= mono_ms(mono));
    }
}
