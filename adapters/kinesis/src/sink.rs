//! `KinesisSink`, the engine's sink port on Kinesis, and each shard's `ShardKinesis`.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beacon_engine::ports::{
    BatchLimits, LocalBoxFuture, SealedBatch, ShardSink, Sink, SinkError, SinkStatus,
};
use event_listener::Event;
use futures_channel::oneshot;

use crate::config::{KinesisConfig, PartitionKey};
use crate::metrics::KinesisMetrics;
use crate::record::Entry;
use crate::sender::{Job, Sender};
use crate::spool::{Spool, SpoolError};

/// How often the replay task looks at the spool when nothing kicks it.
const REPLAY_TICK_MS: u64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot register Kinesis metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

pub struct KinesisSink {
    cfg: KinesisConfig,
    spool_dir: PathBuf,
    jobs: async_channel::Sender<Job>,
    metrics: KinesisMetrics,
    healthy: Arc<AtomicBool>,
    last_error: Arc<Mutex<String>>,
    spools: Arc<Spools>,
}

impl KinesisSink {
    /// Starts the sender on `sidecar` and registers the metrics. `spool_dir` gets one
    /// directory per shard. The AWS client is built on the sidecar from the standard chain
    /// (environment, profile, ECS task role, IMDS), with `cfg.region` and `cfg.endpoint` on top.
    pub fn start(
        cfg: KinesisConfig,
        stream: String,
        spool_dir: PathBuf,
        shards: usize,
        sidecar: &tokio::runtime::Handle,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Self>, StartError> {
        let metrics = KinesisMetrics::register(registry)?;
        let (jobs, jobs_rx) =
            async_channel::bounded(shards * cfg.calls_in_flight_per_shard_max * 2 + 16);
        let healthy = Arc::new(AtomicBool::new(true));
        let last_error = Arc::new(Mutex::new(String::new()));
        let sender_cfg = cfg.clone();
        let (m, h, e) = (metrics.clone(), healthy.clone(), last_error.clone());
        sidecar.spawn(async move {
            let sdk = crate::reader::load_sdk_config(sender_cfg.region.as_deref()).await;
            if let Err(why) = crate::reader::check_sdk_config(&sdk).await {
                // Every call would fail with the SDK's "could not send: other": say what is
                // missing once, and on /health/ready. Events spool until it is fixed.
                tracing::error!(target: "beacon::kinesis", "Kinesis calls cannot work: {why}");
                h.store(false, Ordering::Release);
                *e.lock().expect("not poisoned") = why;
            }
            // beacon retries records itself (only the failed ones, with full jitter).
            let mut conf = aws_sdk_kinesis::config::Builder::from(&sdk)
                .retry_config(aws_config::retry::RetryConfig::disabled());
            if let Some(endpoint) = &sender_cfg.endpoint {
                conf = conf.endpoint_url(endpoint);
            }
            let client = aws_sdk_kinesis::Client::from_conf(conf.build());
            let sender = Sender {
                client,
                stream,
                cfg: sender_cfg,
                metrics: m,
                healthy: h,
                last_error: e,
                shard_map: tokio::sync::Mutex::new(None),
                shard_map_stale: AtomicBool::new(false),
                outage: beacon_engine::Outage::new(beacon_engine::OutageRule::CALLS, "calls"),
            };
            crate::sender::serve(Arc::new(sender), jobs_rx).await;
        });
        Ok(Arc::new(KinesisSink {
            cfg,
            spool_dir,
            jobs,
            metrics,
            healthy,
            last_error,
            spools: Arc::new(Spools::new()),
        }))
    }
}

impl Sink for KinesisSink {
    fn open(&self, shard: usize) -> LocalBoxFuture<'static, Result<Box<dyn ShardSink>, SinkError>> {
        let dir = self.spool_dir.join(format!("shard-{shard}"));
        let cfg = self.cfg.clone();
        let jobs = self.jobs.clone();
        let metrics = self.metrics.clone();
        let (healthy, last_error) = (self.healthy.clone(), self.last_error.clone());
        let spools = self.spools.clone();
        Box::pin(async move {
            let spool = Spool::open(&dir, cfg.spool_bytes_max).map_err(spool_err)?;
            let s = shard.to_string();
            metrics
                .spooled_bytes
                .with_label_values(&[&s])
                .set(spool.bytes() as i64);
            let state = Rc::new(ShardState {
                label: s,
                cfg,
                jobs,
                spool: glommio::sync::RwLock::new(spool),
                bytes_in_flight: Cell::new(0),
                calls_in_flight: Cell::new(0),
                replaying: Cell::new(false),
                in_use: Cell::new(false),
                spools,
                closing: Cell::new(false),
                room: Event::new(),
                kick: Event::new(),
                give_up: Arc::new(AtomicBool::new(false)),
                give_up_now: Arc::new(tokio::sync::Notify::new()),
                metrics,
                healthy,
                last_error,
            });
            glommio::spawn_local(replay(state.clone())).detach();
            Ok(Box::new(ShardKinesis { state }) as Box<dyn ShardSink>)
        })
    }

    fn batch_limits(&self) -> BatchLimits {
        crate::config::BATCH_LIMITS
    }

    fn name(&self) -> &'static str {
        "kinesis"
    }

    fn durable_writes(&self) -> Result<(), String> {
        Ok(())
    }

    fn status(&self) -> SinkStatus {
        let healthy = self.healthy.load(Ordering::Acquire);
        SinkStatus {
            healthy,
            detail: if healthy {
                String::new()
            } else {
                self.last_error.lock().expect("not poisoned").clone()
            },
        }
    }
}

fn spool_err(e: SpoolError) -> SinkError {
    match e {
        SpoolError::Full { .. } => SinkError::Full(e.to_string()),
        SpoolError::Io { path, source } => SinkError::Io {
            what: format!("spool {}", path.display()),
            source,
        },
        SpoolError::Corrupt { .. } => SinkError::Fatal(e.to_string()),
    }
}

/// What the log says of the shards' spools, together: spooling once any shard spools, drained
/// once every spool has been empty for 10 s, a summary every 10 s between; never a line per
/// batch or per shard.
struct Spools {
    outage: beacon_engine::Outage,
    /// Shards whose spool holds records.
    in_use: AtomicUsize,
}

impl Spools {
    fn new() -> Self {
        Spools {
            outage: beacon_engine::Outage::new(
                beacon_engine::OutageRule::CONDITION,
                "spooled batches",
            ),
            in_use: AtomicUsize::new(0),
        }
    }

    fn log(&self, line: Option<beacon_engine::OutageLine>) {
        if let Some(line) = line {
            beacon_engine::log_outage!(
                target: "beacon::kinesis",
                line,
                failing: "spooling records to disk until Kinesis takes them",
                still: "still spooling records to disk",
                recovered: "spool drained";
                shards_spooling = self.in_use.load(Ordering::Acquire)
            );
        }
    }
}

struct ShardState {
    label: String,
    cfg: KinesisConfig,
    jobs: async_channel::Sender<Job>,
    spool: glommio::sync::RwLock<Spool>,
    bytes_in_flight: Cell<usize>,
    calls_in_flight: Cell<usize>,
    /// A spooled batch is in flight; replay sends one at a time, in order.
    replaying: Cell<bool>,
    /// Whether this shard's spool holds records, and every shard's spools (for the log).
    in_use: Cell<bool>,
    spools: Arc<Spools>,
    closing: Cell<bool>,
    room: Event,
    kick: Event,
    give_up: Arc<AtomicBool>,
    give_up_now: Arc<tokio::sync::Notify>,
    metrics: KinesisMetrics,
    /// Whether Kinesis calls succeed, and the sender's last error (shared with `KinesisSink`).
    healthy: Arc<AtomicBool>,
    last_error: Arc<Mutex<String>>,
}

fn bytes_of(entries: &[Entry]) -> usize {
    entries
        .iter()
        .map(|e| e.data.len() + e.partition_key.len())
        .sum()
}

impl ShardState {
    async fn spool_mut(&self) -> glommio::sync::RwLockWriteGuard<'_, Spool> {
        self.spool
            .write()
            .await
            .expect("spool lock is never closed")
    }

    async fn spool_ref(&self) -> glommio::sync::RwLockReadGuard<'_, Spool> {
        self.spool.read().await.expect("spool lock is never closed")
    }

    /// Counts `records` just spooled (0 after a pop) and publishes the spool's size.
    fn record_spooled(&self, spool: &Spool, records: usize) {
        self.metrics
            .spooled_records
            .with_label_values(&[&self.label])
            .inc_by(records as u64);
        self.metrics
            .spooled_bytes
            .with_label_values(&[&self.label])
            .set(spool.bytes() as i64);
        let in_use = !spool.is_empty();
        if self.in_use.replace(in_use) != in_use {
            match in_use {
                true => self.spools.in_use.fetch_add(1, Ordering::AcqRel),
                false => self.spools.in_use.fetch_sub(1, Ordering::AcqRel),
            };
        }
        let outage = &self.spools.outage;
        let line = if records > 0 {
            outage.note("records spooled", "", records as u64);
            outage.failed("Kinesis did not take them in time")
        } else if self.spools.in_use.load(Ordering::Acquire) == 0 {
            outage.ok()
        } else {
            None
        };
        self.spools.log(line);
    }

    fn has_room(&self, bytes: usize) -> bool {
        self.calls_in_flight.get() < self.cfg.calls_in_flight_per_shard_max
            && (self.bytes_in_flight.get() == 0
                || self.bytes_in_flight.get() + bytes <= self.cfg.bytes_in_flight_per_shard_max)
    }

    fn set_in_flight(&self, calls: isize, bytes: isize) {
        self.calls_in_flight
            .set((self.calls_in_flight.get() as isize + calls) as usize);
        self.bytes_in_flight
            .set((self.bytes_in_flight.get() as isize + bytes) as usize);
        self.metrics
            .bytes_in_flight
            .with_label_values(&[&self.label])
            .set(self.bytes_in_flight.get() as i64);
    }

    /// Hands `entries` to the sidecar; what comes back undelivered is spooled. `spooled` is the
    /// spool batch these entries were read from, dropped once the outcome is safe. The
    /// receiver resolves once every entry is in Kinesis or synced to the spool (it is
    /// cancelled if undelivered entries could not be spooled).
    fn dispatch(
        self: &Rc<Self>,
        entries: Vec<Entry>,
        spooled: Option<u64>,
    ) -> oneshot::Receiver<()> {
        let bytes = bytes_of(&entries);
        self.set_in_flight(1, bytes as isize);
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            entries,
            deadline: Instant::now() + Duration::from_millis(self.cfg.record_ttl_ms),
            give_up: self.give_up.clone(),
            give_up_now: self.give_up_now.clone(),
            reply,
        };
        let state = self.clone();
        let (safe, safe_rx) = oneshot::channel();
        let immediate = match self.jobs.try_send(job) {
            Ok(()) => None,
            // The sidecar is gone or swamped: spool the lot now.
            Err(e) => Some(e.into_inner().entries),
        };
        glommio::spawn_local(async move {
            let undelivered = match immediate {
                Some(entries) => entries,
                // The sidecar answers every job; a dropped reply means its runtime stopped,
                // which the binary only lets happen after every shard has closed its sink.
                None => outcome.await.unwrap_or_default(),
            };
            {
                let mut spool = state.spool_mut().await;
                let mut is_safe = true;
                if !undelivered.is_empty() {
                    // Already accepted: these must not be refused, so the bound may be passed.
                    match spool.push_over_bound(&undelivered).await {
                        Ok(()) => state.record_spooled(&spool, undelivered.len()),
                        Err(e) => {
                            is_safe = false;
                            tracing::error!(
                                target: "beacon::kinesis",
                                shard = %state.label,
                                error = %e,
                                "cannot spool undelivered records"
                            )
                        }
                    }
                }
                if is_safe {
                    let _ = safe.send(());
                }
                if let Some(seq) = spooled {
                    if let Err(e) = spool.pop(seq) {
                        tracing::error!(target: "beacon::kinesis", shard = %state.label, error = %e, "cannot drop a replayed spool file");
                    }
                    state.replaying.set(false);
                }
                state.record_spooled(&spool, 0);
            }
            state.set_in_flight(-1, -(bytes as isize));
            state.room.notify(usize::MAX);
            state.kick.notify(1);
        })
        .detach();
        safe_rx
    }
}

/// Replays the spool, oldest batch first, one batch in flight at a time.
async fn replay(state: Rc<ShardState>) {
    loop {
        let kicked = state.kick.listen();
        if state.closing.get() {
            return;
        }
        if !state.replaying.get()
            && state.calls_in_flight.get() < state.cfg.calls_in_flight_per_shard_max
        {
            let front = {
                let spool = state.spool_ref().await;
                spool.front().await
            };
            match front {
                Ok(Some((seq, entries))) => {
                    state.replaying.set(true);
                    // The replay's outcome is tracked by the spool itself.
                    drop(state.dispatch(entries, Some(seq)));
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(target: "beacon::kinesis", shard = %state.label, error = %e, "cannot replay the spool");
                }
            }
        }
        let _ = beacon_engine::timeout(Duration::from_millis(REPLAY_TICK_MS), kicked).await;
        state.spools.log(state.spools.outage.tick());
    }
}

struct ShardKinesis {
    state: Rc<ShardState>,
}

fn entries_of(batch: &SealedBatch, key: PartitionKey) -> Vec<Entry> {
    (0..batch.len())
        .map(|i| Entry {
            partition_key: match key {
                PartitionKey::MessageId => batch.records[i].message_id.hyphenated().to_string(),
                PartitionKey::CampaignId => batch.campaign_id(i).to_string(),
            },
            data: batch.record(i).to_vec(),
        })
        .collect()
}

impl ShardKinesis {
    /// Dead-letters what can never be sent, then dispatches the batch, or spools it when
    /// Kinesis has had no room for `spool_after_ms` or the spool is being replayed. `durable`:
    /// return only once every record is in Kinesis or synced to disk.
    async fn write_batch(&self, batch: &SealedBatch, durable: bool) -> Result<(), SinkError> {
        let state = &self.state;
        let cfg = &state.cfg;
        let (entries, oversized): (Vec<Entry>, Vec<Entry>) = entries_of(batch, cfg.partition_key)
            .into_iter()
            .partition(|e| e.data.len() + e.partition_key.len() <= cfg.record_bytes_max);
        if !oversized.is_empty() {
            let mut spool = state.spool_mut().await;
            spool.dead_letter(&oversized).await.map_err(spool_err)?;
            state
                .metrics
                .dead_lettered
                .with_label_values(&[&state.label])
                .inc_by(oversized.len() as u64);
        }
        if entries.is_empty() {
            return Ok(());
        }
        let bytes = bytes_of(&entries);
        // While anything is spooled, new batches queue behind it, so that replay keeps order.
        let spooling = !state.spool_ref().await.is_empty();
        if !spooling {
            let deadline = Instant::now() + Duration::from_millis(cfg.spool_after_ms);
            loop {
                let freed = state.room.listen();
                if state.has_room(bytes) {
                    let safe = state.dispatch(entries, None);
                    if durable {
                        safe.await.map_err(|_| {
                            SinkError::Fatal("undelivered records could not be spooled".into())
                        })?;
                    }
                    return Ok(());
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || beacon_engine::timeout(left, freed).await.is_none() {
                    break;
                }
            }
        }
        let mut spool = state.spool_mut().await;
        spool.push(&entries).await.map_err(spool_err)?;
        state.record_spooled(&spool, entries.len());
        state.kick.notify(1);
        Ok(())
    }
}

impl ShardSink for ShardKinesis {
    fn write<'a>(
        &'a mut self,
        batch: &'a SealedBatch,
    ) -> LocalBoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.write_batch(batch, false))
    }

    /// Returns once every record is in Kinesis or synced to the spool.
    fn write_durable<'a>(
        &'a mut self,
        batch: &'a SealedBatch,
    ) -> LocalBoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.write_batch(batch, true))
    }

    /// The drain: what is in flight and what the spool holds go to Kinesis, in order, for up to
    /// `shutdown_flush_ms`. What Kinesis has not taken by then is handed back by the sidecar
    /// and spooled, and named in `SinkError::Stranded`: on an instance that goes away with its
    /// disk (a scale-in, a Spot reclaim) those events would be lost, so the process says so
    /// and exits non-zero.
    fn close(&mut self) -> LocalBoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let state = &self.state;
            let budget_ms = state.cfg.shutdown_flush_ms;
            let until = Instant::now() + Duration::from_millis(budget_ms);
            let spooled = state.spool_ref().await.records();
            if spooled > 0 {
                tracing::info!(
                    target: "beacon::kinesis",
                    shard = %state.label,
                    spooled,
                    budget_ms,
                    "stopping: sending the spool to Kinesis before exit"
                );
            }
            // The replay task goes on until `closing`: spooled batches go out oldest first.
            state.kick.notify(usize::MAX);
            while Instant::now() < until
                && (state.calls_in_flight.get() > 0 || !state.spool_ref().await.is_empty())
            {
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            state.closing.set(true);
            state.kick.notify(usize::MAX);
            if state.calls_in_flight.get() > 0 {
                // Out of time: the sidecar hands back what it holds, and it is spooled.
                state.give_up.store(true, Ordering::Release);
                state.give_up_now.notify_waiters();
                let hard_stop =
                    Instant::now() + Duration::from_millis(state.cfg.call_timeout_ms + 1_000);
                while state.calls_in_flight.get() > 0 && Instant::now() < hard_stop {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
            if state.calls_in_flight.get() > 0 {
                return Err(SinkError::Fatal(format!(
                    "{} PutRecords calls still unanswered at shutdown",
                    state.calls_in_flight.get()
                )));
            }
            let spool = state.spool_ref().await;
            if spool.records() == 0 {
                return Ok(());
            }
            let last_error = state.last_error.lock().expect("not poisoned").clone();
            let why = match state.healthy.load(Ordering::Acquire) {
                true => format!(
                    "the stop budget (kinesis.shutdown_flush_ms = {budget_ms}) ran out while \
                     Kinesis was taking them"
                ),
                false => format!(
                    "Kinesis did not take them within kinesis.shutdown_flush_ms = {budget_ms} \
                     (last error: {last_error})"
                ),
            };
            Err(SinkError::Stranded {
                records: spool.records(),
                place: spool.dir().display().to_string(),
                why,
            })
        })
    }
}
