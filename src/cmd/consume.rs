//! `beacon consume events|core-data`: a consumer of the pipeline polling its stream (see
//! `beacon_consumers::poll`), until SIGTERM or Ctrl-C (or, with `--stop-at-end`, until every
//! shard is read to its end); then it saves its checkpoint and exits 0.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use beacon_consumers::poll::{self, PollConfig};
use beacon_consumers::{persist, Handler, Persister, Updater};
use beacon_kinesis::reader::StartAt;

use crate::cli::{ConsumeArgs, ConsumeCommand};
use crate::config::{self, Overrides};
use crate::log::{LogConfig, LogFormat};

pub fn run(command: ConsumeCommand) -> Result<()> {
    let args = match &command {
        ConsumeCommand::Events { stream, .. } | ConsumeCommand::CoreData { stream, .. } => {
            stream.clone()
        }
    };
    crate::log::init(&LogConfig {
        format: match args.log_format.as_str() {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        },
        ..LogConfig::default()
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install signal handlers")?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let kinesis =
            beacon_kinesis::reader::client(args.kinesis_endpoint.as_deref(), args.region.as_deref())
                .await
                .map_err(|e| anyhow!(e))?;
        let poll_cfg = poll_config(&args);
        match command {
            ConsumeCommand::Events {
                table,
                dynamodb_endpoint,
                create_table,
                ..
            } => {
                let client = persist::client(dynamodb_endpoint.as_deref(), args.region.as_deref())
                    .await
                    .map_err(|e| anyhow!(e))?;
                let persister = Persister::new(client, &table);
                if create_table && persister.create_table_if_missing().await.map_err(|e| anyhow!(e))? {
                    tracing::info!(table, "created the table");
                }
                consume(&kinesis, &persister, &poll_cfg, &stop).await
            }
            ConsumeCommand::CoreData { redis, .. } => {
                let mut overrides = Overrides::default();
                overrides.set("redis", "url", redis.redis_url.clone());
                let cfg = config::load(redis.config.as_ref(), overrides)?;
                if cfg.redis.url.is_none() {
                    bail!("no Redis to write to: pass --redis-url redis://host:port (or set REDIS_HOST, BEACON_REDIS_URL, or [redis] url)");
                }
                let updater = Updater::connect(cfg.redis).await.map_err(|e| anyhow!(e))?;
                consume(&kinesis, &updater, &poll_cfg, &stop).await
            }
        }
    })
}

fn poll_config(args: &ConsumeArgs) -> PollConfig {
    let mut cfg = PollConfig::new(&args.stream, &args.state_dir);
    cfg.start = match args.from.as_str() {
        "latest" => StartAt::Latest,
        _ => StartAt::TrimHorizon,
    };
    cfg.idle_ms = args.idle_ms;
    cfg.stop_at_end = args.stop_at_end;
    cfg
}

async fn consume(
    kinesis: &aws_sdk_kinesis::Client,
    handler: &impl Handler,
    cfg: &PollConfig,
    stop: &AtomicBool,
) -> Result<()> {
    poll::run(kinesis, handler, cfg, stop)
        .await
        .map_err(|e| anyhow!(e))
}
