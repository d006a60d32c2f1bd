//! The sidecar's lookup task: `HGETALL <prefix><id>` for each lookup the shards send.
//!
//! One multiplexed connection (redis' `ConnectionManager`, which reconnects by itself) carries
//! every lookup, each in its own tokio task so that many are in flight at once. The task is a
//! small state machine over its connection (`Conn`): `Down` until a connect succeeds (retried
//! with backoff; lookups meanwhile are answered "unavailable" at once), then `Up`, where a PING
//! every `ping_interval_ms` keeps `/health/ready` true to the connection's state even when no
//! lookups flow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use beacon_engine::ports::CoreDataError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;
use crate::metrics::RedisMetrics;
use crate::schema::campaign_from_hash;
use crate::sidecar::{Health, LookupRequest};

enum Conn {
    /// Not connected; the next attempt is due at `retry_at`.
    Down { retry_at: Instant },
    /// Connected; the next PING is due at `ping_at`.
    Up {
        conn: ConnectionManager,
        ping_at: Instant,
    },
}

struct LookupTask {
    client: redis::Client,
    cfg: RedisConfig,
    manager_cfg: ConnectionManagerConfig,
    metrics: RedisMetrics,
    health: Arc<Health>,
    backoff: backon::ExponentialBackoff,
    conn: Conn,
}

pub(crate) async fn serve(
    client: redis::Client,
    cfg: RedisConfig,
    requests: async_channel::Receiver<LookupRequest>,
    metrics: RedisMetrics,
    health: Arc<Health>,
) {
    let every = cfg.reconnect_min_ms.min(cfg.ping_interval_ms);
    let mut tick = tokio::time::interval(Duration::from_millis(every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut task = LookupTask::new(client, cfg, metrics, health);
    loop {
        tokio::select! {
            req = requests.recv() => match req {
                Ok(req) => task.answer(req),
                Err(_) => return, // the engine has stopped
            },
            _ = tick.tick() => task.on_tick().await,
        }
    }
}

impl LookupTask {
    fn new(
        client: redis::Client,
        cfg: RedisConfig,
        metrics: RedisMetrics,
        health: Arc<Health>,
    ) -> Self {
        // The manager reconnects by itself after a dropped connection, with the same bounds
        // as every other reconnect here, so lookups come back soon after Redis does.
        let manager_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)))
            .set_response_timeout(Some(cfg.timeout()))
            .set_min_delay(Duration::from_millis(cfg.reconnect_min_ms))
            .set_max_delay(Duration::from_millis(cfg.reconnect_max_ms));
        LookupTask {
            client,
            backoff: cfg.backoff(),
            manager_cfg,
            cfg,
            metrics,
            health,
            conn: Conn::Down {
                retry_at: Instant::now(),
            },
        }
    }

    /// Connects when an attempt is due, PINGs when a PING is due.
    async fn on_tick(&mut self) {
        let now = Instant::now();
        match &mut self.conn {
            Conn::Down { retry_at } if now >= *retry_at => self.connect().await,
            Conn::Up { conn, ping_at } if now >= *ping_at => {
                *ping_at = now + Duration::from_millis(self.cfg.ping_interval_ms);
                let limit = self.cfg.timeout().max(Duration::from_millis(100));
                tokio::spawn(ping(conn.clone(), limit, self.health.clone()));
            }
            _ => {}
        }
    }

    async fn connect(&mut self) {
        let client = self.client.clone();
        match ConnectionManager::new_with_config(client, self.manager_cfg.clone()).await {
            Ok(conn) => {
                self.backoff = self.cfg.backoff();
                self.health.lookups_up();
                self.conn = Conn::Up {
                    conn,
                    ping_at: Instant::now() + Duration::from_millis(self.cfg.ping_interval_ms),
                };
            }
            Err(e) => {
                self.health
                    .lookups_down(format_args!("connecting for lookups: {e}"));
                let delay = self.backoff.next().unwrap_or(Duration::from_secs(1));
                self.conn = Conn::Down {
                    retry_at: Instant::now() + delay,
                };
            }
        }
    }

    /// Answers `req` from its own task, or at once while not connected.
    fn answer(&self, req: LookupRequest) {
        let Conn::Up { conn, .. } = &self.conn else {
            self.metrics.lookup_errors.inc();
            let _ = req
                .reply
                .send(Err(CoreDataError::Unavailable("not connected to Redis")));
            return;
        };
        let key = self.cfg.key(&req.id);
        let lookup = hgetall(
            conn.clone(),
            key,
            self.cfg.timeout(),
            self.metrics.clone(),
            self.health.clone(),
        );
        tokio::spawn(async move {
            let _ = req.reply.send(lookup.await);
        });
    }
}

async fn ping(mut conn: ConnectionManager, limit: Duration, health: Arc<Health>) {
    let cmd = redis::cmd("PING");
    match tokio::time::timeout(limit, cmd.query_async::<String>(&mut conn)).await {
        Ok(Ok(_)) => health.lookups_up(),
        Ok(Err(e)) => health.lookups_down(format_args!("PING: {e}")),
        Err(_) => health.lookups_down("PING unanswered"),
    }
}

async fn hgetall(
    mut conn: ConnectionManager,
    key: String,
    limit: Duration,
    metrics: RedisMetrics,
    health: Arc<Health>,
) -> Result<Option<beacon_engine::model::Campaign>, CoreDataError> {
    let started = Instant::now();
    metrics.lookups.inc();
    let mut cmd = redis::cmd("HGETALL");
    cmd.arg(&key);
    let attempts = async {
        let first = cmd.query_async(&mut conn).await;
        match first {
            // The connection broke (Redis restarted) and the manager is reconnecting: HGETALL is
            // idempotent, so one more try on the new connection, within the same time limit.
            Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                cmd.query_async(&mut conn).await
            }
            other => other,
        }
    };
    let read = tokio::time::timeout(limit, attempts).await;
    let elapsed = started.elapsed().as_secs_f64();
    metrics.lookup_seconds.observe(elapsed);
    let answer = match read {
        Ok(Ok(fields)) => {
            health.lookups_up();
            campaign_from_hash(fields)
                .map_err(|e| CoreDataError::Malformed(format!("hash {key}: {e}")))
        }
        Ok(Err(e)) => {
            health.lookups_down(format_args!("HGETALL {key}: {e}"));
            Err(CoreDataError::Unavailable("Redis answered with an error"))
        }
        Err(_) => Err(CoreDataError::Timeout),
    };
    if answer.is_err() {
        metrics.lookup_errors.inc();
    }
    answer
}
