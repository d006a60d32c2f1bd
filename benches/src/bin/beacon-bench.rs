//! `beacon-bench`: load tools for latency benchmarks and capacity planning.
//!
//! `beacon-bench load` is an open-loop, constant-rate HTTP/1.1 load generator. Request `i` is
//! due at `start + i / rate`; a keep-alive connection takes the next due request, waits until
//! it is due, and sends it. When the server stalls, requests pile up behind busy connections,
//! and a request that was due while its connection was still busy has its latency counted from
//! its due time, waiting included: no coordinated omission.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use rand::{Rng, RngExt, SeedableRng};
use rand_distr::Distribution;
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "beacon-bench",
    version,
    about = "Load tools for beacon: latency benchmarks and capacity planning"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open-loop, constant-rate load against a running engine; reports latency percentiles.
    Load(LoadArgs),
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Base URL of the engine, e.g. http://127.0.0.1:8080.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Offered rate, requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Campaign ids are drawn from `first-id` .. `first-id + campaigns` (beacon's synthetic ids
    /// start at 1000000).
    #[arg(long, default_value_t = 10_000)]
    campaigns: u64,
    #[arg(long, default_value_t = 1_000_000)]
    first_id: u64,
    /// `uniform`, or `zipf:S` (exponent S, e.g. zipf:1.1: a few hot campaigns).
    #[arg(long, default_value = "uniform")]
    distribution: String,
    /// Share of requests (0..1) for ids no campaign has.
    #[arg(long, default_value_t = 0.0)]
    unknown_share: f64,
    /// Route mix, e.g. `pixel=0.9,event=0.1`.
    #[arg(long, default_value = "pixel=1")]
    mix: String,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar (for scripts).
    #[arg(long)]
    quiet: bool,
    /// Client threads (tokio workers). Default 1: on a small machine shared with the server, a
    /// lean client disturbs the measurement least.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed for ids and routes, for repeatable runs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// How request paths are drawn.
struct Paths {
    routes: Vec<(String, f64)>,
    zipf: Option<rand_distr::Zipf<f64>>,
    campaigns: u64,
    first_id: u64,
    unknown_share: f64,
}

impl Paths {
    fn new(a: &LoadArgs) -> Result<Paths> {
        let mut routes = Vec::new();
        let mut total = 0.0;
        for part in a.mix.split(',') {
            let (route, share) = part
                .split_once('=')
                .with_context(|| format!("--mix: {part:?} is not route=share"))?;
            if route != "pixel" && route != "event" {
                bail!("--mix: route {route:?} is not pixel or event");
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
        let zipf = match a.distribution.as_str() {
            "uniform" => None,
            d => {
                let s: f64 = d
                    .strip_prefix("zipf:")
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("--distribution {d:?}: use uniform or zipf:S"))?;
                Some(
                    rand_distr::Zipf::new(a.campaigns as f64, s)
                        .context("--distribution: bad Zipf exponent")?,
                )
            }
        };
        if !(0.0..=1.0).contains(&a.unknown_share) {
            bail!("--unknown-share must be between 0 and 1");
        }
        if a.campaigns == 0 {
            bail!("--campaigns must be at least 1");
        }
        Ok(Paths {
            routes,
            zipf,
            campaigns: a.campaigns,
            first_id: a.first_id,
            unknown_share: a.unknown_share,
        })
    }

    fn draw(&self, rng: &mut impl Rng) -> String {
        let pick: f64 = rng.random();
        let route = &self
            .routes
            .iter()
            .find(|(_, upto)| pick <= *upto)
            .unwrap_or(&self.routes[0])
            .0;
        if rng.random::<f64>() < self.unknown_share {
            return format!("/{route}/unknown{}", rng.random::<u32>());
        }
        let n = match &self.zipf {
            Some(z) => z.sample(rng) as u64 - 1,
            None => rng.random_range(0..self.campaigns),
        };
        format!("/{route}/{}", self.first_id + n)
    }
}

#[derive(Serialize)]
struct Report {
    target: String,
    offered_rps: u64,
    achieved_rps: f64,
    seconds: f64,
    requests: u64,
    connections: usize,
    latency_ms: BTreeMap<String, f64>,
    statuses: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

struct Shared {
    histogram: Mutex<Histogram<u64>>,
    statuses: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    next: AtomicU64,
    done: AtomicU64,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Load(args) => {
            let report = load(&args)?;
            print!("{}", markdown(&report));
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(())
        }
    }
}

fn load(a: &LoadArgs) -> Result<Report> {
    if a.rate == 0 || a.seconds == 0 || a.connections == 0 {
        bail!("--rate, --seconds and --connections must be at least 1");
    }
    let uri: hyper::Uri = a
        .target
        .parse()
        .with_context(|| format!("--target {:?} is not a URL", a.target))?;
    let authority = uri
        .authority()
        .context("--target needs host:port")?
        .to_string();
    let paths = Arc::new(Paths::new(a)?);
    let total = a.rate * a.seconds;
    let shared = Arc::new(Shared {
        // 1 µs to 60 s, 3 significant digits.
        histogram: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")),
        statuses: Mutex::new(BTreeMap::new()),
        errors: Mutex::new(BTreeMap::new()),
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
    });
    let threads = a.threads.max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let progress = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} requests ({per_sec}) {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        )
    };
    let started = Instant::now();
    runtime.block_on(async {
        let start = tokio::time::Instant::now();
        let interval_ns = 1e9 / a.rate as f64;
        let mut tasks = Vec::new();
        let seed = a.seed;
        for c in 0..a.connections {
            let shared = shared.clone();
            let paths = paths.clone();
            let authority = authority.clone();
            let progress = progress.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(c as u64));
                let mut local =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
                let mut sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> =
                    None;
                loop {
                    let i = shared.next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let due = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
                    // A connection still busy when its next request falls due is backlog, the
                    // server's doing: that request's latency runs from its due time. A connection
                    // that was idle waits on tokio's millisecond timer, whose lateness is the
                    // generator's, not the server's: its latency runs from when it was sent.
                    let backlogged = tokio::time::Instant::now() >= due;
                    tokio::time::sleep_until(due).await;
                    let from = if backlogged {
                        due
                    } else {
                        tokio::time::Instant::now()
                    };
                    let path = paths.draw(&mut rng);
                    let outcome = send(&mut sender, &authority, &path).await;
                    let latency_us = from.elapsed().as_micros().max(1) as u64;
                    local.saturating_record(latency_us);
                    match outcome {
                        Ok(status) => {
                            *shared
                                .statuses
                                .lock()
                                .unwrap()
                                .entry(status.to_string())
                                .or_insert(0) += 1
                        }
                        Err(e) => {
                            sender = None;
                            *shared.errors.lock().unwrap().entry(e).or_insert(0) += 1;
                        }
                    }
                    shared.done.fetch_add(1, Ordering::Relaxed);
                    progress.inc(1);
                }
                shared
                    .histogram
                    .lock()
                    .unwrap()
                    .add(&local)
                    .expect("same bounds");
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let h = shared.histogram.lock().unwrap();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let latency_ms = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)]
        .into_iter()
        .map(|(k, q)| (k.to_string(), ms(q)))
        .chain(std::iter::once((
            "max".to_string(),
            h.max() as f64 / 1000.0,
        )))
        .collect();
    let done = shared.done.load(Ordering::Relaxed);
    let statuses = shared.statuses.lock().unwrap().clone();
    let errors = shared.errors.lock().unwrap().clone();
    drop(h);
    Ok(Report {
        target: a.target.clone(),
        offered_rps: a.rate,
        achieved_rps: done as f64 / seconds,
        seconds,
        requests: done,
        connections: a.connections,
        latency_ms,
        statuses,
        errors,
    })
}

/// Sends one GET on the connection, opening it first if needed; the status, or why it failed.
async fn send(
    sender: &mut Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
    authority: &str,
    path: &str,
) -> Result<u16, String> {
    if sender.is_none() {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let _ = stream.set_nodelay(true);
        let (s, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        *sender = Some(s);
    }
    let s = sender.as_mut().expect("connected above");
    s.ready()
        .await
        .map_err(|_| "connection closed".to_string())?;
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "beacon-bench")
        .body(Empty::new())
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
    Ok(status)
}

fn markdown(r: &Report) -> String {
    let mut out = format!(
        "`{}`: offered {} req/s for {:.1} s over {} connections, open loop (latency from each request's due time)\n\n",
        r.target, r.offered_rps, r.seconds, r.connections
    );
    out.push_str("| achieved req/s | requests | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | statuses | errors |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    let l = |k: &str| r.latency_ms.get(k).copied().unwrap_or(0.0);
    let join = |m: &BTreeMap<String, u64>| {
        if m.is_empty() {
            "-".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    out.push_str(&format!(
        "| {:.0} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |\n",
        r.achieved_rps,
        r.requests,
        l("p50"),
        l("p90"),
        l("p99"),
        l("p99.9"),
        l("max"),
        join(&r.statuses),
        join(&r.errors)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(mix: &str, distribution: &str, unknown: f64) -> LoadArgs {
        LoadArgs {
            target: "http://127.0.0.1:1".into(),
            rate: 1,
            seconds: 1,
            connections: 1,
            campaigns: 100,
            first_id: 1_000_000,
            distribution: distribution.into(),
            unknown_share: unknown,
            mix: mix.into(),
            json: None,
            quiet: true,
            threads: 1,
            seed: 7,
        }
    }

    #[test]
    fn paths_follow_the_mix_the_unknown_share_and_the_id_range() {
        let paths = Paths::new(&args("pixel=3,event=1", "uniform", 0.2)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let drawn: Vec<String> = (0..20_000).map(|_| paths.draw(&mut rng)).collect();
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
        let paths = Paths::new(&args("pixel=1", "zipf:1.2", 0.0)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let hot = (0..10_000)
            .filter(|_| paths.draw(&mut rng) == "/pixel/1000000")
            .count();
        assert!(hot > 2_000, "the first campaign is the hottest: {hot}");
        assert!(Paths::new(&args("pixel=1", "zipf:x", 0.0)).is_err());
        assert!(Paths::new(&args("other=1", "uniform", 0.0)).is_err());
    }
}
