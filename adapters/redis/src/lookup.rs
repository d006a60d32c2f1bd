//! The sidecar's lookup task: `HGETALL <prefix><id>` for each lookup the shards send.
//!
//! One multiplexed connection (redis' `ConnectionManager`, which reconnects by itself) carries
//! every lookup, each in its own tokio task so that many are in flight at once. The connection
//! is made at start and retried with backoff until it succeeds; meanwhile lookups are answered
//! "unavailable" at once. A PING every `ping_interval_ms` keeps `/health/ready` true to the
//! connection's state even when no lookups flow.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use beacon_engine::core_data::CoreDataError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;
use crate::metrics::RedisMetrics;
use crate::schema::campaign_from_hash;
use crate::source::{Health, LookupRequest};

pub(crate) async fn serve(
    client: redis::Client,
    cfg: RedisConfig,
    requests: async_channel::Receiver<LookupRequest>,
    metrics: RedisMetrics,
    health: Arc<Health>,
) {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let manager_cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)))
        .set_response_timeout(Some(timeout));
    let mut conn: Option<ConnectionManager> = None;
    let mut backoff = cfg.backoff();
    let mut next_attempt = Instant::now();
    let mut next_ping = Instant::now();
    let ping_every = Duration::from_millis(cfg.ping_interval_ms);
    let mut tick = tokio::time::interval(Duration::from_millis(
        cfg.reconnect_min_ms.min(cfg.ping_interval_ms),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let req = tokio::select! {
            req = requests.recv() => match req {
                Ok(req) => req,
                Err(_) => return, // the engine has stopped
            },
            _ = tick.tick() => {
                let now = Instant::now();
                match &conn {
                    None if now >= next_attempt => {
                        match ConnectionManager::new_with_config(client.clone(), manager_cfg.clone()).await {
                            Ok(c) => {
                                conn = Some(c);
                                backoff = cfg.backoff();
                                health.lookups_up.store(true, Ordering::Release);
                            }
                            Err(e) => {
                                health.lookups_down(format_args!("connecting for lookups: {e}"));
                                next_attempt = Instant::now() + backoff.next().unwrap_or(Duration::from_secs(1));
                            }
                        }
                    }
                    Some(c) if now >= next_ping => {
                        next_ping = now + ping_every;
                        let mut c = c.clone();
                        let health = health.clone();
                        tokio::spawn(async move {
                            let pong = tokio::time::timeout(timeout.max(Duration::from_millis(100)), redis::cmd("PING").query_async::<String>(&mut c)).await;
                            match pong {
                                Ok(Ok(_)) => health.lookups_up.store(true, Ordering::Release),
                                Ok(Err(e)) => {
                                    health.lookups_down(format_args!("PING: {e}"));
                                }
                                Err(_) => {
                                    health.lookups_down("PING unanswered");
                                }
                            }
                        });
                    }
                    _ => {}
                }
                continue;
            }
        };
        let Some(c) = &conn else {
            metrics.lookup_errors.inc();
            let _ = req.reply.send(Err(CoreDataError::Unavailable(
                "not connected to Redis".into(),
            )));
            continue;
        };
        let mut c = c.clone();
        let key = cfg.key(&req.id);
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            metrics.lookups.inc();
            let read =
                tokio::time::timeout(timeout, redis::cmd("HGETALL").arg(&key).query_async(&mut c))
                    .await;
            metrics
                .lookup_seconds
                .observe(started.elapsed().as_secs_f64());
            let answer = match read {
                Ok(Ok(fields)) => {
                    health.lookups_up.store(true, Ordering::Release);
                    campaign_from_hash(fields)
                        .map_err(|e| CoreDataError::Malformed(format!("hash {key}: {e}")))
                }
                Ok(Err(e)) => {
                    health.lookups_down(format_args!("HGETALL {key}: {e}"));
                    Err(CoreDataError::Unavailable(e.to_string()))
                }
                Err(_) => Err(CoreDataError::Timeout),
            };
            if answer.is_err() {
                metrics.lookup_errors.inc();
            }
            let _ = req.reply.send(answer);
        });
    }
}
