//! What every shard shares: the configuration, every shard's L1 map, the metric families, the
//! ports, and the flags and counters of the shutdown sequence. Fields are private: a shard
//! reads and changes them only through the methods below, which say what each one means.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::cache::L1Map;
use crate::config::EngineConfig;
use crate::metrics::Metrics;
use crate::ports::{CoreDataSource, Sink};

pub struct Shared {
    cfg: EngineConfig,
    shards: usize,
    /// Every shard's L1 map, indexed by shard id; shard i writes only `maps[i]`.
    maps: Vec<Arc<L1Map>>,
    metrics: Metrics,
    /// Set once, by a signal or a failed shard; every shard stops accepting when it sees it.
    stopping: AtomicBool,
    /// Shards accepting connections now, for `/health/ready`.
    shards_up: AtomicUsize,
    /// Shards that have closed their last connection; a shard seals its batch only when every
    /// shard is done, because peers may forward requests to it until then.
    http_done: AtomicUsize,
    /// Per shard: its sink's last write succeeded.
    sink_healthy: Vec<AtomicBool>,
    sink: Arc<dyn Sink>,
    core_data: Arc<dyn CoreDataSource>,
}

impl Shared {
    pub fn new(
        cfg: EngineConfig,
        sink: Arc<dyn Sink>,
        core_data: Arc<dyn CoreDataSource>,
        metrics: Metrics,
    ) -> Shared {
        let shards = cfg.shard_count();
        assert!(shards > 0, "a shard count of zero is a bug");
        let maps = (0..shards)
            .map(|_| {
                let capacity = cfg.l1_entries_per_shard();
                Arc::new(L1Map::new(
                    capacity,
                    cfg.l1_ttl_secs,
                    cfg.l1_negative_ttl_secs,
                ))
            })
            .collect();
        Shared {
            shards,
            maps,
            metrics,
            stopping: AtomicBool::new(false),
            shards_up: AtomicUsize::new(0),
            http_done: AtomicUsize::new(0),
            sink_healthy: (0..shards).map(|_| AtomicBool::new(true)).collect(),
            sink,
            core_data,
            cfg,
        }
    }

    pub fn cfg(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Shard `shard`'s L1 map, readable from any shard.
    pub fn map(&self, shard: usize) -> &Arc<L1Map> {
        &self.maps[shard]
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn sink(&self) -> &dyn Sink {
        &*self.sink
    }

    pub fn core_data(&self) -> &dyn CoreDataSource {
        &*self.core_data
    }

    /// Starts the shutdown on every shard.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// A shard started (`true`) or stopped (`false`) accepting connections.
    pub fn set_accepting(&self, accepting: bool) {
        if accepting {
            self.shards_up.fetch_add(1, Ordering::AcqRel);
        } else {
            self.shards_up.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub fn shards_accepting(&self) -> usize {
        self.shards_up.load(Ordering::Acquire)
    }

    /// A shard has closed its last connection.
    pub fn http_done(&self) {
        self.http_done.fetch_add(1, Ordering::AcqRel);
    }

    /// Every shard has closed its last connection: no request can reach a batch any more.
    pub fn all_http_done(&self) -> bool {
        self.http_done.load(Ordering::Acquire) >= self.shards
    }

    pub fn set_sink_healthy(&self, shard: usize, healthy: bool) {
        self.sink_healthy[shard].store(healthy, Ordering::Release);
    }

    /// Shards whose sink's last write failed.
    pub fn failing_sinks(&self) -> Vec<usize> {
        let failing = |(_, ok): &(usize, &AtomicBool)| !ok.load(Ordering::Acquire);
        self.sink_healthy
            .iter()
            .enumerate()
            .filter(failing)
            .map(|(i, _)| i)
            .collect()
    }
}
