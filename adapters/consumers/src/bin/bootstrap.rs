//! The consumers as a Lambda function (runtime `provided.al2023`; this binary, named
//! `bootstrap`, is the whole package). One binary for both functions; the environment says
//! which and with what:
//!
//! | variable | for | meaning |
//! |---|---|---|
//! | `BEACON_CONSUMER` | both | `events` (the persister) or `core-data` (the updater) |
//! | `BEACON_TABLE` | events | the DynamoDB table (the reference's layout) |
//! | `BEACON_DYNAMODB_ENDPOINT` | events | another endpoint (a local DynamoDB), optional |
//! | `BEACON_REDIS_URL` | core-data | `redis://host:port` or `rediss://…`; or the reference's `REDIS_HOST` and `REDIS_PORT` |
//! | `BEACON_REDIS_KEY_PREFIX` | core-data | prefix of the program hashes' keys, default none |
//! | `BEACON_REDIS_CHANNEL` | core-data | the engines' channel, default `channel1` |
//!
//! The clients (DynamoDB, or one Redis connection) are made once per warm instance.

use aws_lambda_events::event::kinesis::KinesisEvent;
use beacon_consumers::{lambda, persist, Persister, Updater};
use beacon_redis::RedisConfig;
use lambda_runtime::{service_fn, Error, LambdaEvent};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str, what: &str) -> Result<String, Error> {
    env(name).ok_or_else(|| format!("set {name} to {what}").into())
}

/// `BEACON_REDIS_URL`, or the reference's `REDIS_HOST` / `REDIS_PORT`.
fn redis_config() -> Result<RedisConfig, Error> {
    let url = env("BEACON_REDIS_URL").or_else(|| {
        env("REDIS_HOST").map(|host| {
            let port = env("REDIS_PORT").unwrap_or_else(|| "6379".into());
            format!("redis://{host}:{port}")
        })
    });
    let mut cfg = RedisConfig {
        url: Some(url.ok_or("set BEACON_REDIS_URL (or REDIS_HOST) to the core-data Redis")?),
        ..RedisConfig::default()
    };
    if let Some(prefix) = env("BEACON_REDIS_KEY_PREFIX") {
        cfg.key_prefix = prefix;
    }
    if let Some(channel) = env("BEACON_REDIS_CHANNEL") {
        cfg.channel = channel;
    }
    Ok(cfg)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .without_time()
        .init();
    let kind = required("BEACON_CONSUMER", "events or core-data")?;
    match kind.as_str() {
        "events" => {
            let table = required("BEACON_TABLE", "the DynamoDB table of events")?;
            let endpoint = env("BEACON_DYNAMODB_ENDPOINT");
            let client = persist::client(endpoint.as_deref(), None).await?;
            let persister = &Persister::new(client, table);
            lambda_runtime::run(service_fn(|e: LambdaEvent<KinesisEvent>| async move {
                Ok::<_, Error>(lambda::handle(persister, e.payload).await)
            }))
            .await
        }
        "core-data" => {
            let updater = &Updater::connect(redis_config()?).await?;
            lambda_runtime::run(service_fn(|e: LambdaEvent<KinesisEvent>| async move {
                Ok::<_, Error>(lambda::handle(updater, e.payload).await)
            }))
            .await
        }
        other => Err(format!("BEACON_CONSUMER is {other:?}; set it to events or core-data").into()),
    }
}
