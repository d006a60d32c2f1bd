//! The core-data updater: each record of the update stream is one change in the reference's
//! JSON (`{"programId":…,"checksum":…,"customerId":…,"customerName":…,"programName":…,
//! "valid":…}`, beacon's `"deleted":true` for a deletion, and an optional `"version"`), applied
//! to Redis by `beacon_redis::writer`: the hash in the schema the engine reads and a `PUBLISH`
//! on the engines' channel, in one script that leaves a newer version alone.
//!
//! Changes are applied one at a time in stream order (a later change to a program must not land
//! before an earlier one); the first that fails after retries stops the batch there. One
//! connection (a `ConnectionManager`, which reconnects by itself) serves every batch of a warm
//! Lambda or of a polling consumer.

use std::time::Duration;

use beacon_engine::ports::CoreDataUpdate;
use beacon_redis::schema::parse_message;
use beacon_redis::writer::{self, Written};
use beacon_redis::RedisConfig;
use redis::aio::ConnectionManager;

use crate::batch::{Counters, InRecord, Outcome};
use crate::persist::Retry;
use crate::Handler;

pub struct Updater {
    conn: ConnectionManager,
    cfg: RedisConfig,
    retry: Retry,
    counters: Counters,
}

impl Updater {
    /// Connects to `cfg.url` (which must be set).
    pub async fn connect(cfg: RedisConfig) -> Result<Updater, String> {
        let url = cfg
            .url
            .as_deref()
            .map(beacon_redis::config::url_shown)
            .ok_or("no Redis URL: pass --redis-url redis://host:port")?;
        let client = cfg.client().map_err(|e| format!("{url}: {e}"))?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)))
            .set_min_delay(Duration::from_millis(cfg.reconnect_min_ms))
            .set_max_delay(Duration::from_millis(cfg.reconnect_max_ms));
        let conn = ConnectionManager::new_with_config(client, manager)
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        Ok(Updater {
            conn,
            cfg,
            retry: Retry::default(),
            counters: Counters::default(),
        })
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Applies one change, retrying Redis errors; false once the retries are spent.
    async fn apply(&self, record: &InRecord, update: &CoreDataUpdate) -> bool {
        let mut backoff = self.retry.backoff();
        loop {
            let mut conn = self.conn.clone();
            let result = match update {
                CoreDataUpdate::Upsert(c) => writer::put(&mut conn, &self.cfg, c).await,
                CoreDataUpdate::Delete { id, version } => {
                    writer::delete(&mut conn, &self.cfg, id, *version).await
                }
                CoreDataUpdate::Resync => unreachable!("not parsed from a message"),
            };
            match result {
                Ok(Written::Yes) => {
                    Counters::add(&self.counters.written, 1);
                    return true;
                }
                Ok(Written::Stale) => {
                    Counters::add(&self.counters.stale, 1);
                    return true;
                }
                Err(e) => tracing::warn!(
                    sequence_number = %record.sequence_number,
                    error = %e,
                    "core-data write to Redis failed; retrying"
                ),
            }
            match backoff.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return false,
            }
        }
    }
}

impl Handler for Updater {
    async fn handle(&self, records: &[InRecord]) -> Outcome {
        Counters::add(&self.counters.records, records.len() as u64);
        let mut outcome = Outcome::default();
        for (i, record) in records.iter().enumerate() {
            let messages = record.user_records().ok_or("a damaged KPL aggregate");
            let updates = messages.and_then(|ms| {
                ms.iter()
                    .map(|m| parse_message(m, self.cfg.message_bytes_max))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|why| why.as_str())
            });
            let updates = match updates {
                Ok(u) => u,
                Err(why) => {
                    Counters::add(&self.counters.undecodable, 1);
                    tracing::error!(
                        shard = %record.shard_id,
                        sequence_number = %record.sequence_number,
                        error = why,
                        "undecodable core-data record"
                    );
                    outcome.undecodable.push(i);
                    continue;
                }
            };
            for update in &updates {
                if !self.apply(record, update).await {
                    Counters::add(&self.counters.write_failures, 1);
                    outcome.failed_at = Some(i);
                    return outcome;
                }
            }
        }
        outcome
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}
