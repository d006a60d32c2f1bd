//! CPU time as metrics, precise enough for a capacity plan.
//!
//! The standard `process_cpu_seconds_total` counts whole seconds, so over a 10-second capacity
//! step at 20 CPU-µs per request it is off by up to a fifth. This collector reads the kernel's
//! CPU clocks instead (nanosecond resolution) at every scrape:
//! - `beacon_cpu_seconds_total`: the whole process (`CLOCK_PROCESS_CPUTIME_ID`);
//! - `beacon_thread_cpu_seconds_total{thread}`: each registered thread (a shard, the sidecar),
//!   through its `pthread_getcpuclockid` clock, so engine shards and the sidecar are told apart.
//!
//! Threads register themselves (`register_current`) when they start; a thread that has ended
//! keeps its last reading.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, CounterVec, Opts};

/// The CPU clocks of the process and of its registered threads.
#[derive(Clone)]
pub struct CpuClocks {
    inner: Arc<Inner>,
}

struct Inner {
    /// (label, clock id, last reading in seconds). Guarded so that two shards scraping at once
    /// do not interleave the reset and the add below.
    threads: Mutex<Vec<(String, libc::clockid_t, f64)>>,
    per_thread: CounterVec,
    process: Counter,
}

impl CpuClocks {
    pub fn new() -> CpuClocks {
        CpuClocks {
            inner: Arc::new(Inner {
                threads: Mutex::new(Vec::new()),
                per_thread: CounterVec::new(
                    Opts::new(
                        "beacon_thread_cpu_seconds_total",
                        "CPU time (user + system) of each engine thread: shards and the sidecar",
                    ),
                    &["thread"],
                )
                .expect("valid metric"),
                process: Counter::new(
                    "beacon_cpu_seconds_total",
                    "CPU time (user + system) of the whole process, nanosecond resolution",
                )
                .expect("valid metric"),
            }),
        }
    }

    /// Registers the calling thread under `label` (e.g. `shard-0`).
    pub fn register_current(&self, label: &str) {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: pthread_self() is the calling, live thread, and `clock` is a valid out-pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
        if rc != 0 {
            return;
        }
        let mut threads = self.inner.threads.lock().expect("not poisoned");
        threads.retain(|(l, _, _)| l != label);
        threads.push((label.to_string(), clock, 0.0));
    }

    fn refresh(&self) {
        if let Some(s) = read_clock(libc::CLOCK_PROCESS_CPUTIME_ID) {
            let inner = &self.inner;
            inner.process.inc_by((s - inner.process.get()).max(0.0));
        }
        let mut threads = self.inner.threads.lock().expect("not poisoned");
        for (label, clock, last) in threads.iter_mut() {
            // A thread that has ended has no clock any more: its last reading stands.
            if let Some(s) = read_clock(*clock) {
                *last = s;
            }
            let c = self.inner.per_thread.with_label_values(&[label.as_str()]);
            c.inc_by((*last - c.get()).max(0.0));
        }
    }
}

impl Default for CpuClocks {
    fn default() -> Self {
        Self::new()
    }
}

fn read_clock(clock: libc::clockid_t) -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; an invalid clock id is reported through the result.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

impl Collector for CpuClocks {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.inner.per_thread.desc();
        d.extend(self.inner.process.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        let mut families = self.inner.per_thread.collect();
        families.extend(self.inner.process.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(families: &[MetricFamily], name: &str, thread: Option<&str>) -> Option<f64> {
        let f = families.iter().find(|f| f.name() == name)?;
        f.get_metric()
            .iter()
            .find(|m| thread.is_none_or(|t| m.get_label().iter().any(|l| l.value() == t)))
            .map(|m| m.get_counter().get_value())
    }

    #[test]
    fn threads_and_the_process_report_the_cpu_they_burn() {
        let clocks = CpuClocks::new();
        let c = clocks.clone();
        let (spun, spun_rx) = std::sync::mpsc::channel();
        let (end, end_rx) = std::sync::mpsc::channel::<()>();
        let spinner = std::thread::spawn(move || {
            c.register_current("spinner");
            let start = std::time::Instant::now();
            let mut x = 0u64;
            while start.elapsed() < std::time::Duration::from_millis(200) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            spun.send(()).unwrap();
            // Alive until read: a clock is read from a live thread.
            let _ = end_rx.recv();
        });
        spun_rx.recv().unwrap();
        let families = clocks.collect();
        let burned = value(
            &families,
            "beacon_thread_cpu_seconds_total",
            Some("spinner"),
        )
        .unwrap();
        let process = value(&families, "beacon_cpu_seconds_total", None).unwrap();
        // The spinner burned CPU for most of its 200 ms (the machine may be busy), and the
        // process at least as much.
        assert!(burned > 0.02, "spinner {burned}");
        assert!(process >= burned, "process {process} < spinner {burned}");
        end.send(()).unwrap();
        spinner.join().unwrap();
        // An ended thread keeps its last reading; the process clock only goes up.
        let after = clocks.collect();
        let kept = value(&after, "beacon_thread_cpu_seconds_total", Some("spinner")).unwrap();
        assert!(kept >= burned && kept < burned + 0.05, "{kept} vs {burned}");
        assert!(value(&after, "beacon_cpu_seconds_total", None).unwrap() >= process);
    }
}
