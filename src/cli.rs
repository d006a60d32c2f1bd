//! The command line: every command, argument and flag, and how `serve`'s flags override the
//! configuration.

use std::path::PathBuf;

use anyhow::Result;
use beacon_engine::model::Campaign;
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, Overrides};

#[derive(Parser)]
#[command(
    name = "beacon",
    version,
    about = "Thread-per-core ingest engine for ad tracking"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the engine.
    Serve(ServeArgs),
    /// Print events as JSON lines: those under a data directory, or those in a Kinesis stream.
    Tail(TailArgs),
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
    /// Ask a running beacon's health endpoint; exit 0 when it answers 2xx (for container
    /// HEALTHCHECKs, where no curl is at hand).
    Health {
        #[arg(long, default_value = "http://127.0.0.1:8080/health/check")]
        url: String,
        /// Milliseconds to wait for the answer.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Run a consumer of the pipeline, polling its stream until SIGTERM or Ctrl-C.
    Consume {
        #[command(subcommand)]
        command: ConsumeCommand,
    },
}

#[derive(Subcommand)]
pub enum ConsumeCommand {
    /// The event persister: every event of the stream into a DynamoDB table, keyed by message id.
    Events {
        /// The DynamoDB table (hash key `id` S, range key `customer_id` N: the reference's).
        #[arg(long)]
        table: String,
        /// Endpoint of a local implementation of the DynamoDB API, e.g. http://127.0.0.1:4568.
        #[arg(long)]
        dynamodb_endpoint: Option<String>,
        /// Create the table (on-demand capacity) if it does not exist.
        #[arg(long)]
        create_table: bool,
        #[command(flatten)]
        stream: ConsumeArgs,
    },
    /// The core-data updater: every change of the stream into Redis (hash + PUBLISH), older
    /// versions never over newer ones.
    CoreData {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        stream: ConsumeArgs,
    },
}

/// The stream a consumer polls, and where it keeps its place.
#[derive(Args, Clone)]
pub struct ConsumeArgs {
    /// The Kinesis stream to read.
    #[arg(long)]
    pub stream: String,
    /// Endpoint of a local implementation of the Kinesis API, e.g. http://127.0.0.1:4567.
    #[arg(long)]
    pub kinesis_endpoint: Option<String>,
    /// AWS region (default: the standard chain, AWS_REGION or the profile).
    #[arg(long)]
    pub region: Option<String>,
    /// Directory for the checkpoint (`<stream>.checkpoint.json`) and the records that could not
    /// be decoded (`<stream>.failed/`).
    #[arg(long, default_value = "consumer-state")]
    pub state_dir: PathBuf,
    /// Where a shard without a checkpoint starts: `trim-horizon` (the oldest record kept) or
    /// `latest`.
    #[arg(long, default_value = "trim-horizon", value_parser = ["trim-horizon", "latest"])]
    pub from: String,
    /// Milliseconds between polls when nothing is new (Kinesis allows 5 reads a second per
    /// shard, shared by all consumers).
    #[arg(long, default_value_t = 250)]
    pub idle_ms: u64,
    /// Stop (checkpoint saved, exit 0) once every shard is read to its end, instead of
    /// waiting for new records: for a backfill, or to run a stream through again.
    #[arg(long)]
    pub stop_at_end: bool,
    /// Log lines as `text` or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective values.
    Check(ServeArgs),
}

#[derive(Subcommand)]
pub enum CoreDataCommand {
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

/// Where `tail` reads: a data directory, or a Kinesis stream.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["dir", "kinesis_stream"])))]
pub struct TailArgs {
    /// The engine's --data-dir (events the embedded sink wrote).
    pub dir: Option<PathBuf>,
    /// Read this Kinesis stream instead: every shard, KPL aggregates opened.
    #[arg(long)]
    pub kinesis_stream: Option<String>,
    /// Endpoint of a local implementation of the Kinesis API, e.g. http://127.0.0.1:4567.
    #[arg(long, requires = "kinesis_stream")]
    pub kinesis_endpoint: Option<String>,
    /// AWS region (default: the standard chain, AWS_REGION or the profile).
    #[arg(long, requires = "kinesis_stream")]
    pub region: Option<String>,
    /// Where each shard's reading starts: `trim-horizon` (the oldest record kept) or `latest`.
    #[arg(long, default_value = "trim-horizon", value_parser = ["trim-horizon", "latest"], requires = "kinesis_stream")]
    pub from: String,
    /// Keep reading new records (stop with Ctrl-C); without it, stop at the end of every shard.
    #[arg(long, requires = "kinesis_stream")]
    pub follow: bool,
    /// How records are encoded: `auto` (rkyv records carry a header; anything else is read as
    /// protobuf), `rkyv` or `protobuf`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "rkyv", "protobuf"], requires = "kinesis_stream")]
    pub record_format: String,
}

/// One program's core data, in the reference's fields.
#[derive(Args, Clone)]
pub struct ProgramArgs {
    #[arg(long)]
    pub program_id: String,
    #[arg(long)]
    pub program_name: String,
    #[arg(long)]
    pub checksum: String,
    #[arg(long)]
    pub customer_id: i32,
    #[arg(long)]
    pub customer_name: String,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub valid: bool,
    /// Increasing per program; an engine ignores an update older than what it holds.
    #[arg(long)]
    pub version: Option<u64>,
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
            landing_url: None,
        }
    }
}

#[derive(Args, Clone, Default)]
pub struct RedisArgs {
    /// TOML configuration file (its [redis] section is used).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// redis://[user:password@]host:port[/db] or rediss://… (also REDIS_HOST/REDIS_PORT).
    #[arg(long)]
    pub redis_url: Option<String>,
}

/// Flags override environment variables, which override the file, which overrides defaults.
#[derive(Args, Clone, Default)]
pub struct ServeArgs {
    /// TOML configuration file; `beacon config check` prints every section and field with its
    /// effective value. Flags and BEACON_* variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen address [default: 0.0.0.0:8080].
    #[arg(long)]
    pub listen: Option<String>,
    /// A separate address for /metrics, /health/ready and /health/check, e.g. 0.0.0.0:9090;
    /// the public listener then answers 404 to /metrics and /health/ready.
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Number of shards, one pinned executor each [default: one per available core].
    #[arg(long)]
    pub shards: Option<usize>,
    /// Data directory: the segment files, or the Kinesis spool [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Campaigns JSON file in the reference's format (default: the three sample programs).
    #[arg(long)]
    pub campaigns: Option<PathBuf>,
    /// Add N synthetic campaigns (ids 1000000..) for benchmarks.
    #[arg(long)]
    pub synthetic_campaigns: Option<usize>,
    /// How a request for a campaign another shard owns is served: read that shard's cache
    /// (`local`) or forwarded to it (`owner`) [default: local].
    #[arg(long, value_parser = ["owner", "local"])]
    pub routing: Option<String>,
    /// How each event is encoded in the sink [default: rkyv].
    #[arg(long, value_parser = ["rkyv", "protobuf"])]
    pub record_format: Option<String>,
    /// When a tracking request is answered: once its event is in the batch (`accepted`), or
    /// once its batch is written and synced, so that a crash loses nothing answered (`durable`)
    /// [default: accepted].
    #[arg(long, value_parser = ["accepted", "durable"])]
    pub ack: Option<String>,
    /// Pin shard i to the i-th allowed CPU; `--pin-shards false` lets the kernel place them
    /// [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "true|false")]
    pub pin_shards: Option<bool>,
    /// Core data in Redis: redis://[user:password@]host:port[/db] or rediss://…
    #[arg(long)]
    pub redis_url: Option<String>,
    /// CPU for the sidecar thread (default: a CPU no shard uses, if any).
    #[arg(long)]
    pub sidecar_cpu: Option<usize>,
    /// Send events to this Kinesis stream (also EVENT_STREAM) instead of segment files.
    #[arg(long)]
    pub kinesis_stream: Option<String>,
    /// Endpoint of a local implementation of the Kinesis API, e.g. http://127.0.0.1:4567.
    #[arg(long)]
    pub kinesis_endpoint: Option<String>,
    /// Pack many events into each Kinesis record (KPL format, per destination shard).
    #[arg(long)]
    pub aggregation: bool,
    /// Log lines as `text` (default) or `json` (one object per line).
    #[arg(long, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Which log lines to print, in RUST_LOG syntax, e.g. `info` or `warn,beacon::redis=debug`
    /// (also BEACON_LOG).
    #[arg(long)]
    pub log_level: Option<String>,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::default();
        o.set("engine", "listen", self.listen.clone());
        o.set("engine", "admin_listen", self.admin_listen.clone());
        o.set("engine", "shards", self.shards.map(|v| v as i64));
        o.set(
            "engine",
            "data_dir",
            self.data_dir.as_ref().map(|p| p.display().to_string()),
        );
        o.set(
            "campaigns",
            "file",
            self.campaigns.as_ref().map(|p| p.display().to_string()),
        );
        o.set(
            "campaigns",
            "synthetic",
            self.synthetic_campaigns.map(|v| v as i64),
        );
        o.set("engine", "routing", self.routing.clone());
        o.set("engine", "record_format", self.record_format.clone());
        o.set("engine", "ack", self.ack.clone());
        o.set("engine", "pin_shards", self.pin_shards);
        o.set("redis", "url", self.redis_url.clone());
        o.set("sidecar", "cpu", self.sidecar_cpu.map(|v| v as i64));
        o.set("kinesis", "stream", self.kinesis_stream.clone());
        o.set("kinesis", "endpoint", self.kinesis_endpoint.clone());
        o.set("kinesis", "aggregation", self.aggregation.then_some(true));
        o.set("log", "format", self.log_format.clone());
        o.set("log", "level", self.log_level.clone());
        o
    }

    pub fn load(&self) -> Result<Config> {
        config::load(self.config.as_ref(), self.overrides())
    }
}
