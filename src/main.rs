//! `beacon`: the composition root. Parses the command line and configuration, wires the engine
//! to its core data source and sink, and runs it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use beacon_engine::config::{RecordFormat, Routing};
use beacon_engine::core_data::{CoreDataSource, EmbeddedCoreData};
use beacon_engine::segment::{read_all, SegmentSink};
use beacon_engine::{EngineConfig, Server};
use clap::{Args, Parser, Subcommand};

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
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective values.
    Check(ServeArgs),
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Tail { dir } => tail(&dir),
        Command::Config {
            command: ConfigCommand::Check(args),
        } => config_check(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("beacon: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Environment variables the reference reads, which belong to adapters this build lacks.
const REFERENCE_ADAPTER_ENV: [&str; 4] = ["REDIS_HOST", "REDIS_PORT", "EVENT_STREAM", "REGION"];

/// File, then `BEACON_<FIELD>` variables, then flags, into one validated config.
fn load_config(args: &ServeArgs) -> Result<EngineConfig> {
    let mut table: toml::Table = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let file: toml::Table = toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
            match file.get("engine") {
                Some(toml::Value::Table(t)) => t.clone(),
                Some(_) => bail!(
                    "config file {}: `engine` must be a table ([engine])",
                    path.display()
                ),
                None => toml::Table::new(),
            }
        }
        None => toml::Table::new(),
    };
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)?;
        let file: toml::Table = toml::from_str(&text)?;
        if let Some(other) = file.keys().find(|k| k.as_str() != "engine") {
            bail!(
                "config file {}: unknown section [{other}]; this build knows [engine]",
                path.display()
            );
        }
    }
    let known: Vec<String> = toml::Table::try_from(EngineConfig::default())?
        .keys()
        .cloned()
        .chain(["shards".to_string(), "campaigns".to_string()])
        .collect();
    for (name, value) in std::env::vars() {
        let Some(field) = name.strip_prefix("BEACON_") else {
            continue;
        };
        let field = field.to_ascii_lowercase();
        if !known.contains(&field) {
            bail!(
                "environment variable {name}: no config field `{field}` (known: {})",
                known.join(", ")
            );
        }
        table.insert(field, env_value(&value));
    }
    let mut set = |k: &str, v: toml::Value| {
        table.insert(k.to_string(), v);
    };
    if let Some(v) = &args.listen {
        set("listen", v.clone().into());
    }
    if let Some(v) = args.shards {
        set("shards", (v as i64).into());
    }
    if let Some(v) = &args.data_dir {
        set("data_dir", v.display().to_string().into());
    }
    if let Some(v) = &args.campaigns {
        set("campaigns", v.display().to_string().into());
    }
    if let Some(v) = args.synthetic_campaigns {
        set("synthetic_campaigns", (v as i64).into());
    }
    if let Some(v) = &args.routing {
        set("routing", v.clone().into());
    }
    if let Some(v) = &args.record_format {
        set("record_format", v.clone().into());
    }
    if let Some(v) = args.pin_shards {
        set("pin_shards", v.into());
    }
    let cfg: EngineConfig = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        anyhow::anyhow!(
            "invalid configuration: field `{}`: {} (from the config file, BEACON_{} or its flag)",
            e.path(),
            e.inner().to_string().lines().next().unwrap_or_default(),
            e.path().to_string().to_ascii_uppercase()
        )
    })?;
    if let Err(errors) = cfg.validate() {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        bail!("invalid configuration:\n{}", lines.join("\n"));
    }
    Ok(cfg)
}

/// An environment value as TOML: numbers and booleans as such, anything else as a string.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| raw.into()),
        Err(_) => raw.into(),
    }
}

fn warn_reference_env() {
    for name in REFERENCE_ADAPTER_ENV {
        if std::env::var_os(name).is_some() {
            eprintln!("beacon: warning: {name} is set, but this build has no Redis or Kinesis adapter yet; it is ignored");
        }
    }
}

fn core_data(cfg: &EngineConfig) -> Result<EmbeddedCoreData> {
    let base = match &cfg.campaigns {
        Some(path) => EmbeddedCoreData::from_file(path)?,
        None => EmbeddedCoreData::samples(),
    };
    Ok(base.with_synthetic(cfg.synthetic_campaigns))
}

fn serve(args: &ServeArgs) -> Result<()> {
    let cfg = load_config(args)?;
    warn_reference_env();
    let core: Arc<dyn CoreDataSource> = Arc::new(core_data(&cfg)?);
    let sink = Arc::new(SegmentSink {
        dir: cfg.data_dir.clone(),
        segment_bytes_max: cfg.segment_bytes_max,
        fsync: cfg.fsync,
    });
    let routing = cfg.routing;
    let format = cfg.record_format;
    let data_dir = cfg.data_dir.clone();
    let server = Server::start(cfg, core, sink)?;
    println!(
        "beacon listening on http://{} with {} shards (routing {}, records {}, sink segment files in {})",
        server.local_addr(),
        server.shards(),
        routing.as_str(),
        match format {
            RecordFormat::Rkyv => "rkyv",
            RecordFormat::Protobuf => "protobuf",
        },
        data_dir.display()
    );
    let stopper = server.stopper();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("beacon-signals".into())
        .spawn(move || {
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

fn config_check(args: &ServeArgs) -> Result<()> {
    let cfg = load_config(args)?;
    warn_reference_env();
    core_data(&cfg).context("campaigns")?;
    let mut effective = toml::Table::new();
    effective.insert("engine".into(), toml::Table::try_from(&cfg)?.into());
    print!("{}", toml::to_string_pretty(&effective)?);
    eprintln!(
        "beacon: config ok ({} shards, routing {})",
        cfg.shard_count(),
        match cfg.routing {
            Routing::Owner => "owner",
            Routing::Local => "local",
        }
    );
    Ok(())
}
