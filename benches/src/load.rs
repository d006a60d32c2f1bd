//! `beacon-bench load`: an open-loop, constant-rate HTTP/1.1 load generator.
//!
//! One pacer task releases request `i` at `start + i / rate` and stamps it with the moment it
//! released it; keep-alive connection tasks take released requests from a queue, and a request's
//! latency runs from its stamp to the last byte of the response. When the server stalls, the
//! released requests wait in the queue for a free connection, and that wait counts: no
//! coordinated omission.
//!
//! The stamp is the release time, not the due time: tokio's timer wakes up to a millisecond
//! after a due time, and on a machine the client shares with the server the client thread is
//! sometimes descheduled for a few milliseconds; that lateness is the generator's, not the
//! server's (oha's `--latency-correction` stamps the same way, so the two agree). The server is
//! charged for every wait it causes: released requests queue for a free connection, and when the
//! queue is full (`QUEUE_PER_CONNECTION_MAX` per connection, every connection busy) the pacer is
//! held back, and until it has caught up it stamps requests with their due times.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rand::{Rng, RngExt, SeedableRng};
use rand_distr::Distribution;
use serde::Serialize;
use tokio::time::Instant;

/// How far behind schedule a pacer that was held back may be and count as caught up: a little
/// more than tokio's 1 ms timer granularity.
const PACER_SLACK: Duration = Duration::from_millis(2);

/// Released requests waiting for a connection, per connection. At the limit the pacer waits,
/// falls behind, and stamps from due times (see above); the bound keeps memory flat when the
/// server stops answering.
const QUEUE_PER_CONNECTION_MAX: usize = 256;

/// Histogram range: 1 µs to 60 s, 3 significant digits.
const LATENCY_US_MAX: u64 = 60_000_000;

/// What to send: shared by `load` and `capacity`.
#[derive(Args, Clone, Debug)]
pub struct Workload {
    /// Base URL of the engine, e.g. http://127.0.0.1:8080.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Campaign ids are drawn from `first-id` .. `first-id + campaigns` (beacon's synthetic ids
    /// start at 1000000).
    #[arg(long, default_value_t = 10_000)]
    pub campaigns: u64,
    #[arg(long, default_value_t = 1_000_000)]
    pub first_id: u64,
    /// `uniform`, or `zipf:S` (exponent S, e.g. zipf:1.1: a few hot campaigns).
    #[arg(long, default_value = "uniform")]
    pub distribution: String,
    /// Share of requests (0..1) for ids no campaign has.
    #[arg(long, default_value_t = 0.0)]
    pub unknown_share: f64,
    /// Route mix, e.g. `pixel=0.9,event=0.1`; `post` sends `POST /events` with `--batch` events
    /// (ids drawn as for the GETs, each with its own).
    #[arg(long, default_value = "pixel=1")]
    pub mix: String,
    /// Events in each `POST /events` of the `post` route.
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Client threads (tokio workers). Default 1: on a small machine shared with the server, a
    /// lean client disturbs the measurement least.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seed for ids and routes, for repeatable runs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Milliseconds a request may take before it counts as failed (`timeout`) and its
    /// connection is replaced, so a stalled server cannot hang a run.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Share of requests (0..1) that may go without a 2xx answer beyond `--unknown-share`
    /// before a run (or a capacity step) is an error: a server answering 404 to every id
    /// measures nothing.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_share: f64,
}

impl Workload {
    /// Share of requests that may go without a 2xx answer: the unknown ids asked for, and
    /// `max_error_share` more.
    pub fn allowed_non_2xx_share(&self) -> f64 {
        self.unknown_share + self.max_error_share
    }
}

#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    pub workload: Workload,
    /// Offered rate, requests per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar (for scripts).
    #[arg(long)]
    pub quiet: bool,
    /// Exit 0 even when more than the allowed share of requests got no 2xx answer.
    #[arg(long)]
    pub allow_errors: bool,
}

/// One request to send: a GET of `path`, or a POST of `body` to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    pub path: String,
    pub body: Option<Bytes>,
}

/// How requests are drawn.
pub struct Paths {
    routes: Vec<(String, f64)>,
    batch: usize,
    zipf: Option<rand_distr::Zipf<f64>>,
    campaigns: u64,
    first_id: u64,
    unknown_share: f64,
}

impl Paths {
    pub fn new(w: &Workload) -> Result<Paths> {
        let mut routes = Vec::new();
        let mut total = 0.0;
        for part in w.mix.split(',') {
            let (route, share) = part
                .split_once('=')
                .with_context(|| format!("--mix: {part:?} is not route=share"))?;
            if !matches!(route, "pixel" | "event" | "post") {
                bail!("--mix: route {route:?} is not pixel, event or post");
            }
            let share: f64 = share
                .parse()
                .with_context(|| format!("--mix: share {share:?} is not a number"))?;
            total += share;
            routes.push((route.to_string(), total));
        }
        if total <= 0.0 {
            bail!("--mix: the shares add up to zero");
        }
        for r in &mut routes {
            r.1 /= total;
        }
        if w.campaigns == 0 {
            bail!("--campaigns must be at least 1");
        }
        if w.batch == 0 {
            bail!("--batch must be at least 1");
        }
        let zipf = match w.distribution.as_str() {
            "uniform" => None,
            d => {
                let s: f64 = d
                    .strip_prefix("zipf:")
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("--distribution {d:?}: use uniform or zipf:S"))?;
                Some(
                    rand_distr::Zipf::new(w.campaigns as f64, s)
                        .context("--distribution: bad Zipf exponent")?,
                )
            }
        };
        if !(0.0..=1.0).contains(&w.unknown_share) {
            bail!("--unknown-share must be between 0 and 1");
        }
        Ok(Paths {
            routes,
            batch: w.batch,
            zipf,
            campaigns: w.campaigns,
            first_id: w.first_id,
            unknown_share: w.unknown_share,
        })
    }

    pub fn draw(&self, rng: &mut impl Rng) -> Drawn {
        let pick: f64 = rng.random();
        let route = &self
            .routes
            .iter()
            .find(|(_, upto)| pick <= *upto)
            .unwrap_or(&self.routes[0])
            .0;
        if route != "post" {
            return Drawn {
                path: format!("/{route}/{}", self.id(rng)),
                body: None,
            };
        }
        let mut body = String::with_capacity(self.batch * 48);
        body.push('[');
        for i in 0..self.batch {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                r#"{{"programId":"{}","type":"view"}}"#,
                self.id(rng)
            ));
        }
        body.push(']');
        Drawn {
            path: "/events".into(),
            body: Some(Bytes::from(body)),
        }
    }

    /// A campaign id: an unknown one at `unknown_share`, else one of the range.
    fn id(&self, rng: &mut impl Rng) -> String {
        if rng.random::<f64>() < self.unknown_share {
            return format!("unknown{}", rng.random::<u32>());
        }
        let n = match &self.zipf {
            Some(z) => z.sample(rng) as u64 - 1,
            None => rng.random_range(0..self.campaigns),
        };
        (self.first_id + n).to_string()
    }
}

/// One run's results.
#[derive(Serialize, Clone, Debug)]
pub struct Report {
    pub target: String,
    pub offered_rps: u64,
    pub achieved_rps: f64,
    pub seconds: f64,
    pub requests: u64,
    pub connections: usize,
    /// p50, p90, p99, p99.9 and max, in milliseconds.
    pub latency_ms: BTreeMap<String, f64>,
    /// Every recorded latency as `[microseconds, count]` (the histogram's buckets, highest
    /// equivalent value), so that runs can be pooled (`benches/churn --rounds`).
    pub latency_us_histogram: Vec<(u64, u64)>,
    pub statuses: BTreeMap<String, u64>,
    /// Requests that got no response, by why.
    pub errors: BTreeMap<String, u64>,
    /// Requests released late because the queue was full (every connection busy), stamped from
    /// their due time.
    pub late_releases: u64,
}

impl Report {
    pub fn latency(&self, key: &str) -> f64 {
        self.latency_ms.get(key).copied().unwrap_or(f64::NAN)
    }

    /// Requests answered with anything but a 2xx, or not answered at all.
    pub fn not_2xx(&self) -> u64 {
        let other: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| !s.starts_with('2'))
            .map(|(_, n)| n)
            .sum();
        other + self.errors.values().sum::<u64>()
    }

    /// Why this run measured errors rather than the server, if more than `allowed` of its
    /// requests went without a 2xx answer.
    pub fn error_verdict(&self, allowed: f64) -> Option<String> {
        let sent = self.statuses.values().sum::<u64>() + self.errors.values().sum::<u64>();
        let bad = self.not_2xx();
        let share = bad as f64 / sent.max(1) as f64;
        (sent == 0 || share > allowed).then(|| {
            format!(
                "{bad} of {sent} requests ({:.1}%, more than the {:.1}% allowed) got no 2xx answer \
                 (statuses: {}; errors: {})",
                share * 100.0,
                allowed * 100.0,
                join_counts(&self.statuses),
                join_counts(&self.errors)
            )
        })
    }

    /// Requests that failed: no response, or a 5xx (a 4xx is the answer to a bad request).
    pub fn failed(&self) -> u64 {
        let server_errors: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| s.starts_with('5'))
            .map(|(_, n)| n)
            .sum();
        server_errors + self.errors.values().sum::<u64>()
    }
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

/// Runs `rate` requests per second for `seconds` against `w.target`.
pub fn run(
    w: &Workload,
    rate: u64,
    seconds: u64,
    progress: &indicatif::ProgressBar,
) -> Result<Report> {
    if rate == 0 || seconds == 0 || w.connections == 0 || w.timeout_ms == 0 {
        bail!("--rate, --seconds, --connections and --timeout-ms must be at least 1");
    }
    let uri: hyper::Uri = w
        .target
        .parse()
        .with_context(|| format!("--target {:?} is not a URL", w.target))?;
    let authority = uri
        .authority()
        .context("--target needs host:port")?
        .to_string();
    let paths = Arc::new(Paths::new(w)?);
    let total = rate * seconds;
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds"),
    ));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(w.threads.max(1))
        .enable_all()
        .build()?;
    progress.set_length(total);
    progress.set_position(0);
    let (late_releases, elapsed) = runtime.block_on(async {
        let (tx, rx) = async_channel::bounded::<Instant>(w.connections * QUEUE_PER_CONNECTION_MAX);
        // Connections open before the clock starts: a keep-alive benchmark measures requests,
        // not TCP handshakes (a connection the server closes later is reopened on the clock).
        let connected = Arc::new(tokio::sync::Barrier::new(w.connections + 1));
        let mut tasks = Vec::new();
        for c in 0..w.connections {
            let connected = connected.clone();
            let (rx, paths, authority) = (rx.clone(), paths.clone(), authority.clone());
            let (histogram, tally, progress) = (histogram.clone(), tally.clone(), progress.clone());
            let seed = w.seed.wrapping_add(c as u64);
            let timeout = Duration::from_millis(w.timeout_ms);
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let mut local =
                    Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds");
                let mut sender = connect(&authority).await.ok();
                connected.wait().await;
                let mut mine = Tally::default();
                while let Ok(stamp) = rx.recv().await {
                    let drawn = paths.draw(&mut rng);
                    let outcome =
                        tokio::time::timeout(timeout, send(&mut sender, &authority, drawn))
                            .await
                            .unwrap_or_else(|_| {
                                // The connection is mid-request: it cannot carry the next one.
                                sender = None;
                                Err("timeout".to_string())
                            });
                    local.saturating_record(stamp.elapsed().as_micros().max(1) as u64);
                    match outcome {
                        Ok(status) => *mine.statuses.entry(status.to_string()).or_insert(0) += 1,
                        Err(e) => *mine.errors.entry(e).or_insert(0) += 1,
                    }
                    progress.inc(1);
                }
                histogram.lock().unwrap().add(&local).expect("same bounds");
                let mut t = tally.lock().unwrap();
                for (k, v) in mine.statuses {
                    *t.statuses.entry(k).or_insert(0) += v;
                }
                for (k, v) in mine.errors {
                    *t.errors.entry(k).or_insert(0) += v;
                }
            }));
        }
        drop(rx);
        connected.wait().await;
        let start = Instant::now();
        let interval_ns = 1e9 / rate as f64;
        let mut late = 0u64;
        let mut held_back = false;
        for i in 0..total {
            let due = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
            tokio::time::sleep_until(due).await;
            let now = Instant::now();
            held_back &= now.duration_since(due) > PACER_SLACK;
            let stamp = if held_back {
                late += 1;
                due
            } else {
                now
            };
            match tx.try_send(stamp) {
                Ok(()) => {}
                Err(async_channel::TrySendError::Full(stamp)) => {
                    held_back = true;
                    if tx.send(stamp).await.is_err() {
                        break;
                    }
                }
                Err(async_channel::TrySendError::Closed(_)) => break,
            }
        }
        tx.close();
        for t in tasks {
            let _ = t.await;
        }
        (late, start.elapsed())
    });
    progress.finish_and_clear();
    let seconds = elapsed.as_secs_f64();
    let h = histogram.lock().unwrap();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let latency_ms = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)]
        .into_iter()
        .map(|(k, q)| (k.to_string(), ms(q)))
        .chain(std::iter::once((
            "max".to_string(),
            h.max() as f64 / 1000.0,
        )))
        .collect();
    let latency_us_histogram = h
        .iter_recorded()
        .map(|v| {
            (
                h.highest_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            )
        })
        .collect();
    let t = std::mem::take(&mut *tally.lock().unwrap());
    let requests = h.len();
    Ok(Report {
        target: w.target.clone(),
        offered_rps: rate,
        achieved_rps: requests as f64 / seconds,
        seconds,
        requests,
        connections: w.connections,
        latency_ms,
        latency_us_histogram,
        statuses: t.statuses,
        errors: t.errors,
        late_releases,
    })
}

/// A progress bar for `total` requests, hidden when `quiet`.
pub fn progress_bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} requests ({per_sec}) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    )
}

/// Sends one request on the connection, opening it first if needed; the status, or why it
/// failed.
/// A keep-alive connection the server has closed between requests (nginx does after
/// `keepalive_requests`) is reopened once: the request was never sent, so it has not failed.
async fn send(
    sender: &mut Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    authority: &str,
    drawn: Drawn,
) -> Result<u16, String> {
    let reused = sender.is_some();
    let mut s = match sender.take() {
        Some(s) => s,
        None => connect(authority).await?,
    };
    if s.ready().await.is_err() {
        if !reused {
            return Err("connection closed".to_string());
        }
        s = connect(authority).await?;
        s.ready()
            .await
            .map_err(|_| "connection closed".to_string())?;
    }
    let req = match drawn.body {
        None => hyper::Request::get(drawn.path),
        Some(_) => {
            hyper::Request::post(drawn.path).header(hyper::header::CONTENT_TYPE, "application/json")
        }
    }
    .header(hyper::header::HOST, authority)
    .header(hyper::header::USER_AGENT, "beacon-bench")
    .body(Full::new(drawn.body.unwrap_or_default()))
    .expect("valid request");
    let resp = s
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    *sender = Some(s);
    Ok(status)
}

async fn connect(
    authority: &str,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let (s, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(s)
}

/// `a: 1, b: 2`, or `-` for none.
pub fn join_counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "-".to_string();
    }
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn markdown(r: &Report) -> String {
    let mut out = format!(
        "`{}`: offered {} req/s for {:.1} s over {} connections, open loop (latency from each request's release)\n\n",
        r.target, r.offered_rps, r.seconds, r.connections
    );
    out.push_str("| achieved req/s | requests | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | statuses | errors | late releases |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    out.push_str(&format!(
        "| {:.0} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} |\n",
        r.achieved_rps,
        r.requests,
        r.latency("p50"),
        r.latency("p90"),
        r.latency("p99"),
        r.latency("p99.9"),
        r.latency("max"),
        join_counts(&r.statuses),
        join_counts(&r.errors),
        r.late_releases,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn workload(mix: &str, distribution: &str, unknown: f64) -> Workload {
        Workload {
            target: "http://127.0.0.1:1".into(),
            connections: 1,
            campaigns: 100,
            first_id: 1_000_000,
            distribution: distribution.into(),
            unknown_share: unknown,
            mix: mix.into(),
            batch: 10,
            threads: 1,
            seed: 7,
            timeout_ms: 10_000,
            max_error_share: 0.01,
        }
    }

    #[test]
    fn paths_follow_the_mix_the_unknown_share_and_the_id_range() {
        let paths = Paths::new(&workload("pixel=3,event=1", "uniform", 0.2)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let drawn: Vec<String> = (0..20_000).map(|_| paths.draw(&mut rng).path).collect();
        let share = |f: &dyn Fn(&String) -> bool| {
            drawn.iter().filter(|p| f(p)).count() as f64 / drawn.len() as f64
        };
        assert!((share(&|p| p.starts_with("/pixel/")) - 0.75).abs() < 0.02);
        assert!((share(&|p| p.contains("/unknown")) - 0.2).abs() < 0.02);
        for p in drawn.iter().filter(|p| !p.contains("unknown")) {
            let id: u64 = p.rsplit('/').next().unwrap().parse().unwrap();
            assert!((1_000_000..1_000_100).contains(&id), "{p}");
        }
    }

    #[test]
    fn zipf_makes_a_few_campaigns_hot() {
        let paths = Paths::new(&workload("pixel=1", "zipf:1.2", 0.0)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let hot = (0..10_000)
            .filter(|_| paths.draw(&mut rng).path == "/pixel/1000000")
            .count();
        assert!(hot > 2_000, "the first campaign is the hottest: {hot}");
        assert!(Paths::new(&workload("pixel=1", "zipf:x", 0.0)).is_err());
        assert!(Paths::new(&workload("other=1", "uniform", 0.0)).is_err());
    }

    #[test]
    fn posts_carry_a_batch_of_drawn_ids() {
        let paths = Paths::new(&workload("post=1", "uniform", 0.0)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let drawn = paths.draw(&mut rng);
        assert_eq!(drawn.path, "/events");
        let body: serde_json::Value = serde_json::from_slice(&drawn.body.unwrap()).unwrap();
        let events = body.as_array().unwrap();
        assert_eq!(events.len(), 10);
        for e in events {
            let id: u64 = e["programId"].as_str().unwrap().parse().unwrap();
            assert!((1_000_000..1_000_100).contains(&id));
        }
    }

    #[test]
    fn server_errors_and_lost_requests_fail_a_run_and_client_errors_do_not() {
        let mut r = Report {
            target: String::new(),
            offered_rps: 1,
            achieved_rps: 1.0,
            seconds: 1.0,
            requests: 10,
            connections: 1,
            latency_ms: BTreeMap::new(),
            latency_us_histogram: Vec::new(),
            statuses: [("204".to_string(), 5), ("404".to_string(), 3)].into(),
            errors: BTreeMap::new(),
            late_releases: 0,
        };
        assert_eq!(r.failed(), 0);
        r.statuses.insert("503".into(), 1);
        r.errors.insert("connect: ConnectionRefused".into(), 1);
        assert_eq!(r.failed(), 2);
    }

    /// A server that answers each request after `delay_ms`, one request at a time per
    /// connection; its address.
    async fn slow_server(delay_ms: u64) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async move {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(204)
                                .body(http_body_util::Empty::<Bytes>::new())
                                .unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    /// A workload against a new `slow_server`; the runtime serving it lives as long as it is held.
    fn against_slow_server(delay_ms: u64) -> (tokio::runtime::Runtime, Workload) {
        let server = tokio::runtime::Runtime::new().unwrap();
        let addr = server.block_on(slow_server(delay_ms));
        let mut w = workload("pixel=1", "uniform", 0.0);
        w.target = format!("http://{addr}");
        (server, w)
    }

    #[test]
    fn a_server_slower_than_the_offered_rate_is_charged_for_the_queue() {
        let (_server, w) = against_slow_server(10);
        // One connection to a 10 ms server takes at most 100 req/s; 200 are offered for 2 s, so
        // the queue grows by 100 requests a second and the last wait about a second. A
        // closed-loop client would report 10 ms for every request.
        let r = run(&w, 200, 2, &indicatif::ProgressBar::hidden()).unwrap();
        assert_eq!(r.requests, 400);
        assert_eq!(r.statuses.get("204"), Some(&400));
        assert!(r.latency("p50") > 200.0, "p50 {} ms", r.latency("p50"));
        assert!(r.latency("max") > 700.0, "max {} ms", r.latency("max"));
        // The same server keeping up: latency is its 10 ms, not the schedule's.
        let r = run(&w, 50, 1, &indicatif::ProgressBar::hidden()).unwrap();
        assert!(
            r.latency("p50") >= 10.0 && r.latency("p50") < 30.0,
            "p50 {}",
            r.latency("p50")
        );
        assert_eq!(r.failed(), 0);
    }

    #[test]
    fn a_server_that_never_answers_times_out_instead_of_hanging_the_run() {
        let (_server, mut w) = against_slow_server(3_600_000);
        w.connections = 4;
        w.timeout_ms = 200;
        let started = std::time::Instant::now();
        let r = run(&w, 20, 1, &indicatif::ProgressBar::hidden()).unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(r.errors.get("timeout"), Some(&20), "{:?}", r.errors);
        assert_eq!(r.failed(), 20);
    }

    #[test]
    fn an_engine_that_is_not_there_counts_errors() {
        let mut w = workload("pixel=1", "uniform", 0.0);
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        w.target = format!("http://{}", free.local_addr().unwrap());
        drop(free);
        let r = run(&w, 20, 1, &indicatif::ProgressBar::hidden()).unwrap();
        assert_eq!(r.failed(), 20, "{:?}", r.errors);
    }
}
