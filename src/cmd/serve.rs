//! `beacon serve`: wires the engine to its core data source and sink, runs it, and turns
//! SIGTERM/SIGINT into an orderly shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use beacon_engine::embedded::{EmbeddedCoreData, SegmentSink};
use beacon_engine::metrics::Metrics;
use beacon_engine::ports::{CoreDataSource, Sink};
use beacon_engine::{Server, Stopper};

use crate::config::Config;
use crate::sidecar::{spare_cpu, Sidecar};

/// A supervisor and a wrapper (for example `timeout`) often deliver the same stop twice within
/// milliseconds; only a repeat after this long means "exit now".
const FORCE_EXIT_AFTER: Duration = Duration::from_secs(1);

pub fn run(cfg: Config) -> Result<()> {
    crate::log::init(&cfg.log)?;
    super::warn_unused_reference_env(&cfg);
    let (shards, cpus) = (
        cfg.engine.shard_count(),
        beacon_engine::allowed_cpus().len(),
    );
    if cpus > 0 && shards > cpus {
        tracing::warn!(
            shards,
            cpus,
            "more shards than CPUs this process may run on: shards share CPUs and wait for each \
             other; --shards {cpus} fits this machine"
        );
    }
    let metrics = Metrics::new();
    // Created before the server and dropped after it: the sidecar outlives every shard, so
    // every job a shard hands it gets an answer.
    let mut sidecar = SidecarSlot::new(&cfg, &metrics);
    let core = core_data(&cfg, &mut sidecar, &metrics)?;
    let sink = sink(&cfg, &mut sidecar, &metrics)?;
    let (core_name, sink_name) = (core.name(), sink_detail(&cfg));
    let server = Server::start(cfg.engine.clone(), core, sink, metrics)?;
    // Before the ready line: a supervisor may send SIGTERM the moment it sees it.
    watch_signals(server.stopper())?;
    // The ready line on standard output, for scripts that start beacon and wait for it (the
    // address is the bound one, so `--listen 127.0.0.1:0` works): plain text, or with
    // `--log-format json` a JSON object with the same words in `message`. The log says the rest.
    let listen = format!("http://{}", server.local_addr());
    let admin = server
        .admin_addr()
        .map_or("none".to_string(), |a| format!("http://{a}"));
    let also = match server.admin_addr() {
        Some(_) => format!(", admin on {admin}"),
        None => String::new(),
    };
    match crate::log::json() {
        true => tracing::info!(
            target: crate::log::READY_TARGET,
            listen,
            admin,
            "beacon listening on {listen}{also}"
        ),
        false => println!("beacon listening on {listen}{also}"),
    }
    tracing::info!(
        listen = %format_args!("http://{}", server.local_addr()),
        admin = %admin,
        shards = server.shards(),
        routing = %cfg.engine.routing.as_str(),
        record_format = %cfg.engine.record_format.as_str(),
        core_data = %core_name,
        sidecar_cpu = %sidecar.cpu_word(),
        sink = %sink_name,
        "beacon listening"
    );
    server.wait()?;
    drop(sidecar);
    tracing::info!("stopped; every accepted event is in the sink");
    Ok(())
}

/// The sidecar thread, started the first time an adapter needs it.
struct SidecarSlot {
    sidecar: Option<Sidecar>,
    cpu: Option<usize>,
    metrics: Metrics,
}

impl SidecarSlot {
    fn new(cfg: &Config, metrics: &Metrics) -> Self {
        let cpu = cfg
            .sidecar
            .cpu
            .or_else(|| spare_cpu(cfg.engine.shard_count()));
        SidecarSlot {
            sidecar: None,
            cpu,
            metrics: metrics.clone(),
        }
    }

    fn handle(&mut self) -> Result<tokio::runtime::Handle> {
        if self.sidecar.is_none() {
            let clocks = self.metrics.cpu.clone();
            let started = Sidecar::start(self.cpu, move || clocks.register_current("sidecar"))?;
            self.sidecar = Some(started);
        }
        Ok(self
            .sidecar
            .as_ref()
            .expect("just started")
            .handle()
            .clone())
    }

    /// The CPU the sidecar runs on, as the log says it: its number, `unpinned`, or `none`
    /// (no adapter needed a sidecar).
    fn cpu_word(&self) -> String {
        match self.sidecar.as_ref().map(|s| s.cpu) {
            None => "none".into(),
            Some(None) => "unpinned".into(),
            Some(Some(cpu)) => cpu.to_string(),
        }
    }
}

fn core_data(
    cfg: &Config,
    sidecar: &mut SidecarSlot,
    metrics: &Metrics,
) -> Result<Arc<dyn CoreDataSource>> {
    Ok(match &cfg.redis.url {
        Some(_) => beacon_redis::RedisCoreData::start(
            cfg.redis.clone(),
            cfg.engine.shard_count(),
            &sidecar.handle()?,
            &metrics.registry,
        )?,
        None => Arc::new(EmbeddedCoreData::from_config(&cfg.campaigns)?),
    })
}

fn sink(cfg: &Config, sidecar: &mut SidecarSlot, metrics: &Metrics) -> Result<Arc<dyn Sink>> {
    Ok(match &cfg.kinesis.stream {
        Some(stream) => beacon_kinesis::KinesisSink::start(
            cfg.kinesis.clone(),
            stream.clone(),
            cfg.engine.data_dir.join("spool"),
            cfg.engine.shard_count(),
            &sidecar.handle()?,
            &metrics.registry,
        )?,
        None => Arc::new(SegmentSink {
            dir: cfg.engine.data_dir.clone(),
            cfg: cfg.segments.clone(),
        }),
    })
}

fn sink_detail(cfg: &Config) -> String {
    let dir = cfg.engine.data_dir.display();
    match &cfg.kinesis.stream {
        Some(stream) => format!("Kinesis stream {stream} (spool in {dir}/spool)"),
        None => format!("segment files in {dir}"),
    }
}

/// The first SIGTERM or SIGINT starts the shutdown; another one a second or more later exits
/// at once, without flushing.
fn watch_signals(stopper: Stopper) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("cannot install signal handlers")?;
    let watch = move || {
        let mut first: Option<Instant> = None;
        for _ in signals.forever() {
            match first {
                None => {
                    first = Some(Instant::now());
                    tracing::info!("stopping: finishing in-flight requests and flushing every batch (signal again to exit at once)");
                    stopper.stop();
                }
                Some(t) if t.elapsed() < FORCE_EXIT_AFTER => {}
                Some(_) => {
                    tracing::warn!("second signal: exiting without flushing");
                    std::process::exit(130);
                }
            }
        }
    };
    std::thread::Builder::new()
        .name("beacon-signals".into())
        .spawn(watch)?;
    Ok(())
}
