//! Reads the engine's `/metrics` (Prometheus text) into the few totals a capacity plan needs.

use anyhow::{Context, Result};

/// Totals read from one scrape; the difference of two scrapes is what a step cost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// CPU seconds of the engine's shard threads (`beacon_thread_cpu_seconds_total{thread=~"shard-.*"}`).
    pub shard_cpu_seconds: f64,
    /// CPU seconds of the sidecar thread (Redis, Kinesis).
    pub sidecar_cpu_seconds: f64,
    /// CPU seconds of the whole process.
    pub process_cpu_seconds: f64,
    /// Tracking requests answered (`/pixel` and `/event`), any status.
    pub requests: f64,
    pub events: f64,
    pub event_bytes: f64,
    pub batches: f64,
    /// Shards the engine runs (from `beacon_shard_up`).
    pub shards: usize,
}

impl Totals {
    /// Parses Prometheus text exposition.
    pub fn parse(text: &str) -> Result<Totals> {
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .context("the metrics page is not Prometheus text")?;
        let mut t = Totals::default();
        let mut precise_process = None;
        let mut coarse_process = 0.0;
        for s in &scrape.samples {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => continue,
            };
            let label = |k: &str| s.labels.get(k).unwrap_or("");
            match s.metric.as_str() {
                "beacon_thread_cpu_seconds_total" if label("thread").starts_with("shard-") => {
                    t.shard_cpu_seconds += v
                }
                "beacon_thread_cpu_seconds_total" if label("thread") == "sidecar" => {
                    t.sidecar_cpu_seconds += v
                }
                "beacon_cpu_seconds_total" => precise_process = Some(v),
                "process_cpu_seconds_total" => coarse_process = v,
                "beacon_requests_total" if matches!(label("route"), "pixel" | "event") => {
                    t.requests += v
                }
                "beacon_events_accepted_total" => t.events += v,
                "beacon_event_bytes_total" => t.event_bytes += v,
                "beacon_batches_sealed_total" => t.batches += v,
                "beacon_shard_up" if v > 0.0 => t.shards += 1,
                _ => {}
            }
        }
        t.process_cpu_seconds = precise_process.unwrap_or(coarse_process);
        Ok(t)
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Totals) -> Totals {
        Totals {
            shard_cpu_seconds: self.shard_cpu_seconds - before.shard_cpu_seconds,
            sidecar_cpu_seconds: self.sidecar_cpu_seconds - before.sidecar_cpu_seconds,
            process_cpu_seconds: self.process_cpu_seconds - before.process_cpu_seconds,
            requests: self.requests - before.requests,
            events: self.events - before.events,
            event_bytes: self.event_bytes - before.event_bytes,
            batches: self.batches - before.batches,
            shards: self.shards,
        }
    }

    /// Engine CPU: the shard threads when the engine reports them, else the whole process.
    pub fn engine_cpu_seconds(&self) -> f64 {
        if self.shard_cpu_seconds > 0.0 {
            self.shard_cpu_seconds
        } else {
            self.process_cpu_seconds
        }
    }
}

/// Fetches `<target>/metrics`.
pub fn fetch(target: &str) -> Result<Totals> {
    let url = format!("{}/metrics", target.trim_end_matches('/'));
    let body = ureq::get(&url)
        .call()
        .with_context(|| format!("cannot read {url}: is beacon running there?"))?
        .body_mut()
        .read_to_string()
        .with_context(|| format!("cannot read the body of {url}"))?;
    Totals::parse(&body).with_context(|| format!("reading {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP beacon_thread_cpu_seconds_total CPU time
# TYPE beacon_thread_cpu_seconds_total counter
beacon_thread_cpu_seconds_total{thread="shard-0"} 1.5
beacon_thread_cpu_seconds_total{thread="shard-1"} 2.25
beacon_thread_cpu_seconds_total{thread="sidecar"} 0.5
# TYPE beacon_cpu_seconds_total counter
beacon_cpu_seconds_total 4.5
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 4
# TYPE beacon_requests_total counter
beacon_requests_total{route="pixel",shard="0",status="204"} 100
beacon_requests_total{route="pixel",shard="1",status="404"} 10
beacon_requests_total{route="event",shard="1",status="200"} 5
beacon_requests_total{route="metrics",shard="0",status="200"} 3
# TYPE beacon_events_accepted_total counter
beacon_events_accepted_total{shard="0"} 60
beacon_events_accepted_total{shard="1"} 45
# TYPE beacon_event_bytes_total counter
beacon_event_bytes_total{shard="0"} 6000
beacon_event_bytes_total{shard="1"} 4500
# TYPE beacon_batches_sealed_total counter
beacon_batches_sealed_total{shard="0"} 2
# TYPE beacon_shard_up gauge
beacon_shard_up{shard="0"} 1
beacon_shard_up{shard="1"} 1
"#;

    #[test]
    fn a_scrape_sums_shards_and_counts_tracking_routes_only() {
        let t = Totals::parse(PAGE).unwrap();
        assert_eq!(t.shard_cpu_seconds, 3.75);
        assert_eq!(t.sidecar_cpu_seconds, 0.5);
        assert_eq!(t.process_cpu_seconds, 4.5, "the precise clock wins");
        assert_eq!(
            t.requests, 115.0,
            "metrics scrapes are not tracking requests"
        );
        assert_eq!((t.events, t.event_bytes, t.batches), (105.0, 10500.0, 2.0));
        assert_eq!(t.shards, 2);
        let later = Totals {
            shard_cpu_seconds: 5.0,
            requests: 215.0,
            ..t.clone()
        };
        let d = later.since(&t);
        assert_eq!(
            (d.shard_cpu_seconds, d.requests, d.events),
            (1.25, 100.0, 0.0)
        );
        assert_eq!(d.engine_cpu_seconds(), 1.25);
    }

    #[test]
    fn an_engine_without_thread_clocks_falls_back_to_the_process() {
        let t = Totals::parse("process_cpu_seconds_total 7\n").unwrap();
        assert_eq!(t.engine_cpu_seconds(), 7.0);
    }
}
