//! The sidecar's subscriber: the dedicated task that keeps every shard's L1 fresh.
//!
//! Loop: connect, `SUBSCRIBE <channel>`, then tell every shard to resync (pub/sub is
//! at-most-once: whatever was published while the subscription was down is lost, so every L1
//! entry is revalidated on its next lookup), then route each message to the shard that owns its
//! campaign. A PING every `ping_interval_ms` that goes unanswered for `connect_timeout_ms`, or
//! any error, ends the subscription; the loop waits a capped, jittered, growing delay and
//! starts over.

use std::sync::Arc;
use std::time::Duration;

use beacon_engine::model::owner;
use beacon_engine::ports::CoreDataUpdate;
use futures_lite::StreamExt;

use crate::config::RedisConfig;
use crate::metrics::RedisMetrics;
use crate::schema::parse_message;
use crate::sidecar::Health;

pub(crate) async fn run(
    client: redis::Client,
    cfg: RedisConfig,
    shards: Vec<async_channel::Sender<CoreDataUpdate>>,
    metrics: RedisMetrics,
    health: Arc<Health>,
) {
    let mut backoff = cfg.backoff();
    loop {
        let ended = subscribe(&client, &cfg, &shards, &metrics, &health, &mut backoff).await;
        metrics.subscriber_up.set(0);
        if shards.iter().all(|s| s.is_closed()) {
            return; // the engine has stopped
        }
        health.subscriber_down(ended);
        let delay = backoff.next().unwrap_or(Duration::from_secs(1));
        tokio::time::sleep(delay).await;
    }
}

/// One subscription, from connect to its end; returns why it ended.
async fn subscribe(
    client: &redis::Client,
    cfg: &RedisConfig,
    shards: &[async_channel::Sender<CoreDataUpdate>],
    metrics: &RedisMetrics,
    health: &Health,
    backoff: &mut backon::ExponentialBackoff,
) -> String {
    let limit = Duration::from_millis(cfg.connect_timeout_ms);
    let mut pubsub = match tokio::time::timeout(limit, client.get_async_pubsub()).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return format!("connect: {e}"),
        Err(_) => return format!("connect: no answer within {} ms", cfg.connect_timeout_ms),
    };
    match tokio::time::timeout(limit, pubsub.subscribe(&cfg.channel)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return format!("SUBSCRIBE {}: {e}", cfg.channel),
        Err(_) => return format!("SUBSCRIBE {}: no answer", cfg.channel),
    }
    for shard in shards {
        if shard.send(CoreDataUpdate::Resync).await.is_err() {
            return "engine stopped".into();
        }
    }
    metrics.resyncs.inc();
    metrics.subscriber_up.set(1);
    health.subscriber_up();
    *backoff = cfg.backoff();

    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(Duration::from_millis(cfg.ping_interval_ms));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return "connection closed".into() };
                match parse_message(msg.get_payload_bytes(), cfg.message_bytes_max) {
                    Ok(update) => {
                        let id = match &update {
                            CoreDataUpdate::Upsert(c) => c.program_id.as_str(),
                            CoreDataUpdate::Delete { id, .. } => id.as_str(),
                            CoreDataUpdate::Resync => unreachable!("not parsed from a message"),
                        };
                        let owner = owner(id, shards.len());
                        metrics.messages_routed.inc();
                        if shards[owner].send(update).await.is_err() {
                            return "engine stopped".into();
                        }
                    }
                    Err(why) => metrics.rejected(why),
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(limit, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => health.subscriber_up(),
                    Ok(Err(e)) => return format!("PING: {e}"),
                    Err(_) => return format!("PING unanswered for {} ms", cfg.connect_timeout_ms),
                }
            }
        }
    }
}
