//! Per-shard batching of event records in front of the sink.
//!
//! A shard appends each accepted event to its open batch. The batch is sealed when the next
//! record would pass `batch_records_max` or `batch_bytes_max`, or `batch_linger_ms` after its
//! first record. Sealed batches wait in a queue of at most `sink_queue_batches_max` for the
//! shard's writer task, which hands them to the sink in order and retries failures. When the
//! queue is full an append that needs a seal is refused (the caller answers 503): memory stays
//! bounded and no accepted event is dropped.
//!
//! With `ack = "durable"` a request waits (`Batcher::written`) until the batch holding its
//! event is written. Batches are then handed to the sink as soon as its writer is idle (group
//! commit): an event waits for at most the write in progress and its own, never the linger,
//! and under load each write carries what arrived during the previous one.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use event_listener::Event as Notify;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

pub use open::OpenBatch;

use crate::config::{Ack, EngineConfig, RecordFormat};
use crate::metrics::ShardMetrics;
use crate::model::Event;
use crate::ports::{SealedBatch, ShardSink, SinkError};

mod open;

/// Retry delays for a failing sink write: doubling from 10 ms, capped at 1 s.
const SINK_RETRY_FIRST_MS: u64 = 10;
const SINK_RETRY_MAX_MS: u64 = 1_000;

/// Why an append was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

pub struct Batcher {
    shard: usize,
    format: RecordFormat,
    linger: Duration,
    open: RefCell<OpenBatch>,
    /// Reused encoding buffer: one record at a time.
    scratch: RefCell<Vec<u8>>,
    next_seq: Cell<u64>,
    queue: RefCell<Option<LocalSender<SealedBatch>>>,
    /// `sink_queue_batches_max`.
    queue_capacity: usize,
    linger_kick: LocalSender<u64>,
    metrics: Rc<ShardMetrics>,
    healthy: Cell<bool>,
    write_outage: crate::sys::Outage,
    /// `ack = "durable"`: seal as soon as the writer is idle.
    durable: bool,
    /// The writer waits for a batch (nothing queued, nothing being written).
    writer_idle: Cell<bool>,
    /// Every batch up to this sequence number is written (they are written in order).
    written_seq: Cell<u64>,
    /// Notified whenever `written_seq` moves.
    written: Notify,
}

/// The tasks that drain a batcher; await `writer` after `Batcher::close`.
pub struct BatcherTasks {
    /// Ends with the sink's `close` result.
    pub writer: glommio::task::JoinHandle<Result<(), SinkError>>,
}

impl Batcher {
    pub fn new(
        shard: usize,
        cfg: &EngineConfig,
        sink: Box<dyn ShardSink>,
        metrics: Rc<ShardMetrics>,
    ) -> (Rc<Batcher>, BatcherTasks) {
        assert!(cfg.batch_records_max > 0 && cfg.sink_queue_batches_max > 0);
        let (queue_tx, queue_rx) = local_channel::new_bounded(cfg.sink_queue_batches_max);
        let (linger_tx, linger_rx) = local_channel::new_bounded(1);
        let batcher = Rc::new(Batcher {
            shard,
            format: cfg.record_format,
            linger: Duration::from_millis(cfg.batch_linger_ms),
            open: RefCell::new(OpenBatch::new(cfg.batch_records_max, cfg.batch_bytes_max)),
            scratch: RefCell::new(Vec::with_capacity(1024)),
            next_seq: Cell::new(1),
            queue: RefCell::new(Some(queue_tx)),
            queue_capacity: cfg.sink_queue_batches_max,
            linger_kick: linger_tx,
            metrics: metrics.clone(),
            healthy: Cell::new(true),
            write_outage: crate::sys::Outage::new(crate::sys::OutageRule::CONDITION, "writes"),
            durable: cfg.ack == Ack::Durable,
            writer_idle: Cell::new(true),
            written_seq: Cell::new(0),
            written: Notify::new(),
        });
        glommio::spawn_local(linger_loop(Rc::downgrade(&batcher), linger_rx)).detach();
        let writer = glommio::spawn_local(writer_loop(batcher.clone(), sink, queue_rx)).detach();
        (batcher, BatcherTasks { writer })
    }

    /// Whether sealed batches waiting for the sink fill at least `percent` % of the queue
    /// (rounded up to a whole batch); true once the batcher is closed.
    pub fn queue_at_least(&self, percent: u64) -> bool {
        let queue = self.queue.borrow();
        let Some(queue) = queue.as_ref() else {
            return true;
        };
        let mark = (self.queue_capacity as u64 * percent).div_ceil(100).max(1);
        queue.len() as u64 >= mark
    }

    /// False while the sink's last write failed.
    pub fn healthy(&self) -> bool {
        self.healthy.get()
    }

    /// The writes' state-change lines: failing at the first failed write, recovered after
    /// 10 s without one, a summary every 10 s between (never a line per retry).
    fn log_writes(&self, line: Option<crate::sys::OutageLine>) {
        if let Some(line) = line {
            crate::log_outage!(
                target: "beacon_engine::batch",
                line,
                failing: "sink writes failing; retrying with backoff, answering 503 when the queue fills",
                still: "sink writes still failing",
                recovered: "sink writes succeed again";
                shard = self.shard
            );
        }
    }

    /// Appends `event`, sealing the open batch first if the record would not fit. Returns the
    /// sequence number of the batch that holds it (for `written`).
    pub fn append(&self, event: &Event<'_>) -> Result<u64, QueueFull> {
        let mut scratch = self.scratch.borrow_mut();
        scratch.clear();
        event.encode_into(self.format, &mut scratch);
        let mut open = self.open.borrow_mut();
        if !open.fits(scratch.len()) && !open.is_empty() {
            self.seal_open(&mut open)?;
        }
        if open.is_empty() {
            let seq = self.next_seq.get();
            open.start(seq);
            self.next_seq.set(seq + 1);
            let _ = self.linger_kick.try_send(seq);
        }
        open.push(&scratch, event.message_id, &event.campaign.program_id);
        self.metrics.event_bytes.inc_by(scratch.len() as u64);
        let seq = open.seq();
        if self.durable && self.writer_idle.replace(false) {
            // The writer waits on an empty queue: hand it this batch now. (Were the seal
            // refused, the event stays in the open batch for the next seal.)
            let _ = self.seal_open(&mut open);
        }
        Ok(seq)
    }

    /// Waits until batch `seq` is written by the sink.
    pub async fn written(&self, seq: u64) {
        loop {
            if self.written_seq.get() >= seq {
                return;
            }
            let listener = self.written.listen();
            if self.written_seq.get() >= seq {
                return;
            }
            listener.await;
        }
    }

    fn mark_written(&self, seq: u64) {
        self.written_seq.set(seq);
        self.written.notify(usize::MAX);
    }

    /// With durable acks, after a write: seal what arrived meanwhile, so that it goes next.
    fn seal_for_next_write(&self) {
        if self.durable {
            let mut open = self.open.borrow_mut();
            if !open.is_empty() {
                let _ = self.seal_open(&mut open);
            }
        }
    }

    fn seal_open(&self, open: &mut OpenBatch) -> Result<(), QueueFull> {
        let queue = self.queue.borrow();
        let Some(queue) = queue.as_ref() else {
            return Err(QueueFull);
        };
        if queue.is_full() {
            self.metrics.sink_queue_full.inc();
            return Err(QueueFull);
        }
        let batch = self.take(open);
        queue.try_send(batch).map_err(|_| QueueFull)?;
        self.metrics.sink_queue_batches.inc();
        Ok(())
    }

    fn take(&self, open: &mut OpenBatch) -> SealedBatch {
        self.metrics.batches_sealed.inc();
        open.seal(self.shard, self.format)
    }

    /// Seals the open batch if it is still batch `seq` (a linger deadline passed).
    fn seal_if_still(&self, seq: u64) -> Result<(), QueueFull> {
        let mut open = self.open.borrow_mut();
        if open.seq() == seq && !open.is_empty() {
            self.seal_open(&mut open)
        } else {
            Ok(())
        }
    }

    /// Seals whatever is open, waiting for queue room, and closes the queue: the writer drains
    /// it and closes the sink. Appends after this are refused.
    pub async fn close(&self) {
        let batch = {
            let mut open = self.open.borrow_mut();
            (!open.is_empty()).then(|| self.take(&mut open))
        };
        let queue = self.queue.borrow_mut().take();
        if let (Some(batch), Some(queue)) = (batch, &queue) {
            if queue.send(batch).await.is_ok() {
                self.metrics.sink_queue_batches.inc();
            }
        }
        drop(queue);
    }
}

async fn linger_loop(batcher: std::rc::Weak<Batcher>, kicks: LocalReceiver<u64>) {
    while let Some(seq) = kicks.recv().await {
        let Some(linger) = batcher.upgrade().map(|b| b.linger) else {
            return;
        };
        glommio::timer::sleep(linger).await;
        loop {
            let Some(b) = batcher.upgrade() else { return };
            if b.seal_if_still(seq).is_ok() {
                break;
            }
            // The queue is full: the sink is behind. Try again shortly; appends are being
            // refused meanwhile, so this batch cannot grow.
            drop(b);
            glommio::timer::sleep(Duration::from_millis(SINK_RETRY_FIRST_MS)).await;
        }
    }
}

async fn writer_loop(
    batcher: Rc<Batcher>,
    mut sink: Box<dyn ShardSink>,
    queue: LocalReceiver<SealedBatch>,
) -> Result<(), SinkError> {
    let metrics = batcher.metrics.clone();
    loop {
        // A queued batch is taken without yielding, so only a writer that really waits is
        // seen idle.
        batcher.writer_idle.set(true);
        let Some(batch) = queue.recv().await else {
            break;
        };
        batcher.writer_idle.set(false);
        let mut delay = SINK_RETRY_FIRST_MS;
        loop {
            let written = match batcher.durable {
                true => sink.write_durable(&batch).await,
                false => sink.write(&batch).await,
            };
            match written {
                Ok(()) => {
                    batcher.healthy.set(true);
                    batcher.log_writes(batcher.write_outage.ok());
                    metrics.events_written.inc_by(batch.len() as u64);
                    metrics.sink_queue_batches.dec();
                    batcher.mark_written(batch.seq);
                    batcher.seal_for_next_write();
                    break;
                }
                Err(e) => {
                    batcher.healthy.set(false);
                    batcher.log_writes(batcher.write_outage.failed(&e.to_string()));
                    metrics.sink_errors.inc();
                    glommio::timer::sleep(Duration::from_millis(delay)).await;
                    delay = (delay * 2).min(SINK_RETRY_MAX_MS);
                }
            }
        }
    }
    sink.close().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::model::Campaign;
    use crate::ports::{LocalBoxFuture, SinkError};
    use std::cell::RefCell;

    /// A sink that fails every write while `down` is set, and records what it took.
    struct Flaky {
        down: Rc<Cell<bool>>,
        taken: Rc<RefCell<Vec<uuid::Uuid>>>,
    }

    impl ShardSink for Flaky {
        fn write<'a>(
            &'a mut self,
            batch: &'a SealedBatch,
        ) -> LocalBoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async move {
                if self.down.get() {
                    return Err(SinkError::Fatal("down for the test".into()));
                }
                self.taken
                    .borrow_mut()
                    .extend(batch.records.iter().map(|m| m.message_id));
                Ok(())
            })
        }
        fn close(&mut self) -> LocalBoxFuture<'_, Result<(), SinkError>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn a_stalled_sink_bounds_the_queue_and_loses_nothing_accepted() {
        crate::test_executor().run(async {
            let cfg = EngineConfig {
                batch_records_max: 10,
                sink_queue_batches_max: 3,
                batch_linger_ms: 5,
                ..EngineConfig::default()
            };
            let down = Rc::new(Cell::new(true));
            let taken = Rc::new(RefCell::new(Vec::new()));
            let sink = Flaky {
                down: down.clone(),
                taken: taken.clone(),
            };
            let metrics = Rc::new(Metrics::new().for_shard(0));
            let (batcher, tasks) = Batcher::new(0, &cfg, Box::new(sink), metrics.clone());
            let campaign = Campaign::unvalidated("212313");
            let mut accepted = Vec::new();
            let mut refused = 0;
            for _ in 0..200 {
                let event = Event {
                    message_id: uuid::Uuid::new_v4(),
                    campaign: &campaign,
                    user_agent: "t",
                    received_at_ms: 0,
                    client_ip: "127.0.0.1",
                    trace_id: "t",
                    validated: true,
                    route: crate::model::EventRoute::Pixel,
                    bot: false,
                    extras: crate::model::EventExtras::NONE,
                };
                match batcher.append(&event) {
                    Ok(_) => accepted.push(event.message_id),
                    Err(QueueFull) => refused += 1,
                }
            }
            // At most: the queue (3 batches) + the one being retried + the open batch.
            assert!(accepted.len() <= 10 * 5, "accepted {}", accepted.len());
            assert!(refused > 0);
            glommio::timer::sleep(Duration::from_millis(30)).await;
            assert!(!batcher.healthy());
            down.set(false);
            batcher.close().await;
            tasks.writer.await;
            assert_eq!(*taken.borrow(), accepted, "every accepted event, in order");
            assert_eq!(metrics.events_written.get(), accepted.len() as u64);
            assert!(metrics.sink_queue_full.get() > 0);
        });
    }
}
