//! `RedisCoreData`: the engine's core data port, backed by Redis through the sidecar.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use beacon_engine::ports::{
    CoreDataError, CoreDataLookup, CoreDataSource, CoreDataStatus, CoreDataUpdate, LookupFuture,
    UpdateStream,
};
use futures_channel::oneshot;

use crate::config::RedisConfig;
use crate::metrics::RedisMetrics;
use crate::sidecar::{Health, LookupRequest};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid redis URL: {0}")]
    Url(#[from] redis::RedisError),
    #[error("cannot register Redis metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Campaign core data in Redis. Created once; every shard gets its own lookup handle and its
/// own stream of pushed changes.
pub struct RedisCoreData {
    lookups: async_channel::Sender<LookupRequest>,
    updates: Mutex<Vec<Option<async_channel::Receiver<CoreDataUpdate>>>>,
    timeout: Duration,
    health: Arc<Health>,
}

impl RedisCoreData {
    /// Starts the lookup and subscriber tasks on `sidecar` (the sidecar thread's runtime) for an
    /// engine of `shards` shards, and registers the adapter's metrics in `registry`. Redis need
    /// not be up: both tasks keep reconnecting.
    pub fn start(
        cfg: RedisConfig,
        shards: usize,
        sidecar: &tokio::runtime::Handle,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Self>, StartError> {
        assert!(shards > 0);
        let client = cfg.client()?;
        let metrics = RedisMetrics::register(registry)?;
        let health = Arc::new(Health::default());
        let (lookup_tx, lookup_rx) = async_channel::bounded(cfg.lookup_queue_max);
        let (update_txs, update_rxs): (Vec<_>, Vec<_>) = (0..shards)
            .map(|_| async_channel::bounded(cfg.update_queue_max))
            .unzip();
        sidecar.spawn(crate::lookup::serve(
            client.clone(),
            cfg.clone(),
            lookup_rx,
            metrics.clone(),
            health.clone(),
        ));
        sidecar.spawn(crate::subscriber::run(
            client,
            cfg.clone(),
            update_txs,
            metrics,
            health.clone(),
        ));
        Ok(Arc::new(RedisCoreData {
            lookups: lookup_tx,
            updates: Mutex::new(update_rxs.into_iter().map(Some).collect()),
            timeout: Duration::from_millis(cfg.timeout_ms),
            health,
        }))
    }
}

impl CoreDataSource for RedisCoreData {
    fn for_shard(&self, _shard: usize) -> Box<dyn CoreDataLookup> {
        Box::new(ShardLookup {
            tx: self.lookups.clone(),
            timeout: self.timeout,
        })
    }

    fn updates(&self, shard: usize) -> Option<UpdateStream> {
        let rx = self.updates.lock().expect("not poisoned")[shard].take()?;
        Some(Box::pin(rx))
    }

    fn status(&self) -> CoreDataStatus {
        let lookups = self.health.lookups.is_up();
        let subscriber = self.health.subscriber.is_up();
        let detail = match (lookups, subscriber) {
            (true, true) => "connected, subscribed".to_string(),
            _ => format!(
                "lookups {}, subscriber {}: {}",
                if lookups { "up" } else { "down" },
                if subscriber { "up" } else { "down" },
                self.health.last_error.lock().expect("not poisoned")
            ),
        };
        CoreDataStatus {
            up: lookups && subscriber,
            detail,
        }
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

struct ShardLookup {
    tx: async_channel::Sender<LookupRequest>,
    timeout: Duration,
}

impl CoreDataLookup for ShardLookup {
    fn lookup(&self, campaign_id: &str) -> LookupFuture {
        let tx = self.tx.clone();
        let id: Box<str> = campaign_id.into();
        let limit = self.timeout;
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            // A full queue means the sidecar is far behind: fail now rather than queue a
            // lookup that will time out anyway.
            tx.try_send(LookupRequest { id, reply }).map_err(|e| {
                CoreDataError::Unavailable(if e.is_full() {
                    "lookup queue full"
                } else {
                    "sidecar stopped"
                })
            })?;
            match beacon_engine::timeout(limit, answer).await {
                Some(Ok(result)) => result,
                Some(Err(_)) => Err(CoreDataError::Unavailable("sidecar dropped the lookup")),
                None => Err(CoreDataError::Timeout),
            }
        })
    }
}
