//! `beacon`: the composition root. Parses the command line and configuration, wires the engine
//! to its core data source and sink, and runs it.

mod config;
mod sidecar;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use beacon_engine::campaign::Campaign;
use beacon_engine::core_data::{CoreDataSource, EmbeddedCoreData};
use beacon_engine::metrics::Metrics;
use beacon_engine::segment::{read_all, SegmentSink};
use beacon_engine::sink::Sink;
use beacon_engine::Server;
use clap::{Args, Parser, Subcommand};
use config::{Config, Overrides};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "beacon",
    version,
    about = "Thread-per-core ingest engine for ad tracking"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine.
    Serve(ServeArgs),
    /// Print every event under a data directory as JSON lines.
    Tail {
        /// The engine's --data-dir.
        dir: PathBuf,
    },
    /// Work with the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Write campaign core data to Redis (hash + PUBLISH in one MULTI/EXEC).
    CoreData {
        #[command(subcommand)]
        command: CoreDataCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective values.
    Check(ServeArgs),
}

#[derive(Subcommand)]
enum CoreDataCommand {
    /// Write every program of a JSON file in the reference's format.
    Load {
        file: PathBuf,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Write one program.
    Put {
        #[command(flatten)]
        program: ProgramArgs,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Delete one program.
    Delete {
        program_id: String,
        #[arg(long)]
        version: Option<u64>,
        #[command(flatten)]
        redis: RedisArgs,
    },
}

/// One program's core data, in the reference's fields.
#[derive(Args, Clone)]
struct ProgramArgs {
    #[arg(long)]
    program_id: String,
    #[arg(long)]
    program_name: String,
    #[arg(long)]
    checksum: String,
    #[arg(long)]
    customer_id: i32,
    #[arg(long)]
    customer_name: String,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    valid: bool,
    /// Increasing per program; an engine ignores an update older than what it holds.
    #[arg(long)]
    version: Option<u64>,
}

impl From<ProgramArgs> for Campaign {
    fn from(p: ProgramArgs) -> Campaign {
        Campaign {
            program_id: p.program_id,
            program_name: p.program_name,
            checksum: p.checksum,
            customer_id: p.customer_id,
            customer_name: p.customer_name,
            valid: p.valid,
            version: p.version,
        }
    }
}

#[derive(Args, Clone, Default)]
struct RedisArgs {
    /// TOML configuration file (its [redis] section is used).
    #[arg(long)]
    config: Option<PathBuf>,
    /// redis://[user:password@]host:port[/db] or rediss://… (also REDIS_HOST/REDIS_PORT).
    #[arg(long)]
    redis_url: Option<String>,
}

/// Flags override environment variables, which override the file, which overrides defaults.
#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// TOML configuration file (see README "Configuration").
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address, e.g. 0.0.0.0:8080.
    #[arg(long)]
    listen: Option<String>,
    /// Number of shards (default: available cores).
    #[arg(long)]
    shards: Option<usize>,
    /// Directory for the embedded sink's segment files.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Campaigns JSON file in the reference's format (default: the three sample programs).
    #[arg(long)]
    campaigns: Option<PathBuf>,
    /// Add N synthetic campaigns (ids 1000000..) for benchmarks.
    #[arg(long)]
    synthetic_campaigns: Option<usize>,
    /// owner | local.
    #[arg(long, value_parser = ["owner", "local"])]
    routing: Option<String>,
    /// rkyv | protobuf.
    #[arg(long, value_parser = ["rkyv", "protobuf"])]
    record_format: Option<String>,
    /// Pin each shard to a CPU (true | false).
    #[arg(long)]
    pin_shards: Option<bool>,
    /// Core data in Redis: redis://[user:password@]host:port[/db] or rediss://…
    #[arg(long)]
    redis_url: Option<String>,
    /// CPU for the sidecar thread (default: a CPU no shard uses, if any).
    #[arg(long)]
    sidecar_cpu: Option<usize>,
    /// Send events to this Kinesis stream (also EVENT_STREAM) instead of segment files.
    #[arg(long)]
    kinesis_stream: Option<String>,
    /// Endpoint of a local implementation of the Kinesis API, e.g. http://127.0.0.1:4567.
    #[arg(long)]
    kinesis_endpoint: Option<String>,
    /// Pack many events into each Kinesis record (KPL format, per destination shard).
    #[arg(long)]
    aggregation: bool,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::default();
        o.set("engine", "listen", self.listen.clone());
        o.set("engine", "shards", self.shards.map(|v| v as i64));
        o.set(
            "engine",
            "data_dir",
            self.data_dir.as_ref().map(|p| p.display().to_string()),
        );
        o.set(
            "engine",
            "campaigns",
            self.campaigns.as_ref().map(|p| p.display().to_string()),
        );
        o.set(
            "engine",
            "synthetic_campaigns",
            self.synthetic_campaigns.map(|v| v as i64),
        );
        o.set("engine", "routing", self.routing.clone());
        o.set("engine", "record_format", self.record_format.clone());
        o.set("engine", "pin_shards", self.pin_shards);
        o.set("redis", "url", self.redis_url.clone());
        o.set("sidecar", "cpu", self.sidecar_cpu.map(|v| v as i64));
        o.set("kinesis", "stream", self.kinesis_stream.clone());
        o.set("kinesis", "endpoint", self.kinesis_endpoint.clone());
        o.set("kinesis", "aggregation", self.aggregation.then_some(true));
        o
    }

    fn load(&self) -> Result<Config> {
        config::load(self.config.as_ref(), self.overrides())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.load().and_then(serve),
        Command::Tail { dir } => tail(&dir),
        Command::Config {
            command: ConfigCommand::Check(args),
        } => args.load().and_then(config_check),
        Command::CoreData { command } => core_data_command(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("beacon: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn warn_unused_reference_env(cfg: &Config) {
    if cfg.kinesis.stream.is_none() && std::env::var_os("REGION").is_some() {
        eprintln!("beacon: warning: REGION is set without a Kinesis stream; it is ignored");
    }
    if cfg.redis.url.is_none() && std::env::var_os("REDIS_PORT").is_some() {
        eprintln!("beacon: warning: REDIS_PORT is set without REDIS_HOST; it is ignored");
    }
}

fn embedded_core_data(cfg: &Config) -> Result<EmbeddedCoreData> {
    let base = match &cfg.engine.campaigns {
        Some(path) => EmbeddedCoreData::from_file(path)?,
        None => EmbeddedCoreData::samples(),
    };
    Ok(base.with_synthetic(cfg.engine.synthetic_campaigns))
}

fn serve(cfg: Config) -> Result<()> {
    warn_unused_reference_env(&cfg);
    let metrics = Metrics::new();
    let shards = cfg.engine.shard_count();
    // Created before the server and dropped after it: the sidecar outlives every shard, so
    // every job a shard hands it gets an answer.
    let mut sidecar = None;
    let mut sidecar_handle = || -> Result<tokio::runtime::Handle> {
        if sidecar.is_none() {
            let clocks = metrics.cpu.clone();
            sidecar = Some(sidecar::Sidecar::start(
                cfg.sidecar.cpu.or_else(|| sidecar::spare_cpu(shards)),
                move || clocks.register_current("sidecar"),
            )?);
        }
        Ok(sidecar.as_ref().expect("just started").handle().clone())
    };
    let core: Arc<dyn CoreDataSource> = match &cfg.redis.url {
        Some(url) => {
            let handle = sidecar_handle()?;
            beacon_redis::RedisCoreData::start(
                cfg.redis.clone(),
                url,
                shards,
                &handle,
                &metrics.registry,
            )?
        }
        None => Arc::new(embedded_core_data(&cfg)?),
    };
    let sink: Arc<dyn Sink> = match &cfg.kinesis.stream {
        Some(stream) => {
            let handle = sidecar_handle()?;
            beacon_kinesis::KinesisSink::start(
                cfg.kinesis.clone(),
                stream.clone(),
                cfg.engine.data_dir.join("spool"),
                shards,
                &handle,
                &metrics.registry,
            )?
        }
        None => Arc::new(SegmentSink {
            dir: cfg.engine.data_dir.clone(),
            segment_bytes_max: cfg.engine.segment_bytes_max,
            fsync: cfg.engine.fsync,
        }),
    };
    let core_name = core.name();
    let sink_name = match &cfg.kinesis.stream {
        Some(stream) => format!(
            "Kinesis stream {stream} (spool in {})",
            cfg.engine.data_dir.join("spool").display()
        ),
        None => format!("segment files in {}", cfg.engine.data_dir.display()),
    };
    let server = Server::start(cfg.engine.clone(), core, sink, metrics)?;
    println!(
        "beacon listening on http://{} with {} shards (routing {}, records {:?}, core data {}{}, sink {})",
        server.local_addr(),
        server.shards(),
        cfg.engine.routing.as_str(),
        cfg.engine.record_format,
        core_name,
        match sidecar.as_ref().map(|s| s.cpu) {
            Some(Some(cpu)) => format!(" via the sidecar on CPU {cpu}"),
            Some(None) => " via the sidecar (unpinned)".to_string(),
            None => String::new(),
        },
        sink_name
    );
    let stopper = server.stopper();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("cannot install signal handlers")?;
    std::thread::Builder::new().name("beacon-signals".into()).spawn(move || {
        // A supervisor and a wrapper (for example `timeout`) often deliver the same stop
        // twice within milliseconds; only a repeat after FORCE_EXIT_AFTER means "now".
        const FORCE_EXIT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
        let mut first: Option<std::time::Instant> = None;
        for _ in signals.forever() {
            match first {
                None => {
                    first = Some(std::time::Instant::now());
                    eprintln!("beacon: stopping: finishing in-flight requests and flushing every batch (signal again to exit at once)");
                    stopper.stop();
                }
                Some(t) if t.elapsed() < FORCE_EXIT_AFTER => {}
                Some(_) => {
                    eprintln!("beacon: second signal: exiting without flushing");
                    std::process::exit(130);
                }
            }
        }
    })?;
    server.wait()?;
    drop(sidecar);
    eprintln!("beacon: stopped; every accepted event is in the sink");
    Ok(())
}

fn tail(dir: &Path) -> Result<()> {
    use std::io::Write;
    if !dir.is_dir() {
        bail!(
            "{} is not a directory; pass the engine's --data-dir",
            dir.display()
        );
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_err = None;
    let problems = read_all(dir, |_, event| {
        if write_err.is_none() {
            if let Err(e) = serde_json::to_writer(&mut out, &event)
                .map_err(std::io::Error::from)
                .and_then(|_| out.write_all(b"\n"))
            {
                write_err = Some(e);
            }
        }
    })
    .with_context(|| format!("cannot read {}", dir.display()))?;
    out.flush()?;
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    for p in problems {
        eprintln!(
            "beacon tail: {} at byte {}: {}",
            p.path.display(),
            p.offset,
            p.what
        );
    }
    Ok(())
}

fn config_check(cfg: Config) -> Result<()> {
    warn_unused_reference_env(&cfg);
    if cfg.redis.url.is_none() {
        embedded_core_data(&cfg).context("campaigns")?;
    }
    print!("{}", config::render(&cfg)?);
    eprintln!(
        "beacon: config ok ({} shards, routing {}, core data {})",
        cfg.engine.shard_count(),
        cfg.engine.routing.as_str(),
        if cfg.redis.url.is_some() {
            "redis"
        } else {
            "embedded"
        }
    );
    Ok(())
}

fn core_data_command(command: CoreDataCommand) -> Result<()> {
    let redis_args = match &command {
        CoreDataCommand::Load { redis, .. }
        | CoreDataCommand::Put { redis, .. }
        | CoreDataCommand::Delete { redis, .. } => redis.clone(),
    };
    let mut overrides = Overrides::default();
    overrides.set("redis", "url", redis_args.redis_url.clone());
    let cfg = config::load(redis_args.config.as_ref(), overrides)?;
    let Some(url) = cfg.redis.url.clone() else {
        bail!("no Redis to write to: pass --redis-url redis://host:port (or set REDIS_HOST, BEACON_REDIS_URL, or [redis] url)");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut conn = beacon_redis::writer::connect(&url)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        match command {
            CoreDataCommand::Load { file, .. } => {
                let json = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let campaigns: Vec<Campaign> = serde_json::from_str(&json).with_context(|| {
                    format!(
                        "{} is not a JSON array of programs in the reference's format",
                        file.display()
                    )
                })?;
                for c in &campaigns {
                    beacon_engine::campaign::check_id(&c.program_id).map_err(|why| {
                        anyhow::anyhow!("program id {:?}: {}", c.program_id, why.as_str())
                    })?;
                    beacon_redis::writer::put(&mut conn, &cfg.redis, c).await?;
                }
                eprintln!(
                    "beacon: wrote {} programs to {url} and announced each on {}",
                    campaigns.len(),
                    cfg.redis.channel
                );
            }
            CoreDataCommand::Put { program, .. } => {
                let c = Campaign::from(program);
                beacon_engine::campaign::check_id(&c.program_id).map_err(|why| {
                    anyhow::anyhow!("program id {:?}: {}", c.program_id, why.as_str())
                })?;
                beacon_redis::writer::put(&mut conn, &cfg.redis, &c).await?;
            }
            CoreDataCommand::Delete {
                program_id,
                version,
                ..
            } => {
                beacon_redis::writer::delete(&mut conn, &cfg.redis, &program_id, version).await?;
            }
        }
        Ok(())
    })
}
