//! The sink port: where sealed batches of event records go.
//!
//! A `Sink` is shared by all shards and opens one `ShardSink` on each shard. Each shard's
//! batcher hands its sealed batches, in order, to that shard's `ShardSink`, one at a time; a
//! failed write is retried (the batch stays queued), so the bounded queue in front of the sink
//! fills and the shard answers 503 rather than buffer without limit or drop an event.

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

pub use crate::config::BatchLimits;
use crate::config::RecordFormat;

pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Where a record sits inside a batch's buffers.
#[derive(Clone, Copy, Debug)]
pub struct RecordMeta {
    pub offset: u32,
    pub len: u32,
    pub message_id: Uuid,
    pub key_offset: u32,
    pub key_len: u32,
}

/// An immutable batch of encoded records from one shard, in acceptance order.
#[derive(Debug)]
pub struct SealedBatch {
    pub shard: usize,
    /// Per-shard sequence number, from 0 at each start.
    pub seq: u64,
    pub format: RecordFormat,
    pub data: Vec<u8>,
    pub records: Vec<RecordMeta>,
    /// Campaign ids of the records, concatenated (a partition-key source for adapters).
    pub keys: String,
}

impl SealedBatch {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn record(&self, i: usize) -> &[u8] {
        let m = &self.records[i];
        &self.data[m.offset as usize..(m.offset + m.len) as usize]
    }

    pub fn campaign_id(&self, i: usize) -> &str {
        let m = &self.records[i];
        &self.keys[m.key_offset as usize..(m.key_offset + m.key_len) as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = (&RecordMeta, &[u8])> {
        self.records.iter().map(|m| {
            (
                m,
                &self.data[m.offset as usize..(m.offset + m.len) as usize],
            )
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An I/O failure; the write is retried with backoff.
    #[error("sink I/O error at {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// The sink cannot take batches at all (misconfiguration); retrying does not help.
    #[error("sink unusable: {0}")]
    Fatal(String),
    /// The sink has no room now (for example its spool is full); the write is retried.
    #[error("sink full: {0}")]
    Full(String),
    /// From `close`: the sink stopped with `records` accepted events still held at `place` (for
    /// example a spool on local disk) instead of at its destination, because of `why`. They are
    /// not lost while `place` lasts, but a process that exits now leaves them behind.
    #[error("{records} accepted events are still in {place}: {why}")]
    Stranded {
        records: u64,
        place: String,
        why: String,
    },
}

/// How the sink looks from the engine, for `/health/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStatus {
    /// Writes are reaching their destination.
    pub healthy: bool,
    /// What is wrong, in a few words.
    pub detail: String,
}

/// One shard's handle on the sink. `!Send`: it lives on its shard.
pub trait ShardSink {
    /// Takes responsibility for `batch`. On `Err` the batcher keeps the batch and retries.
    fn write<'a>(&'a mut self, batch: &'a SealedBatch)
        -> LocalBoxFuture<'a, Result<(), SinkError>>;
    /// Like `write`, but returns only once the batch survives a crash (`ack = "durable"`).
    /// The default is `write`: for sinks whose every finished write is durable.
    fn write_durable<'a>(
        &'a mut self,
        batch: &'a SealedBatch,
    ) -> LocalBoxFuture<'a, Result<(), SinkError>> {
        self.write(batch)
    }
    /// Flushes and releases everything; called once at shutdown after the last write.
    /// `SinkError::Stranded` says what it could not deliver; the process then exits non-zero.
    fn close(&mut self) -> LocalBoxFuture<'_, Result<(), SinkError>>;
}

/// Shared by every shard.
pub trait Sink: Send + Sync {
    /// Opens shard `shard`'s handle; runs on that shard.
    fn open(&self, shard: usize) -> LocalBoxFuture<'static, Result<Box<dyn ShardSink>, SinkError>>;
    /// A short name for logs and `/health/ready`.
    fn name(&self) -> &'static str;
    /// The most one batch may hold for one `write`; the engine refuses to start with batch
    /// bounds above these.
    fn batch_limits(&self) -> BatchLimits;
    /// Whether a finished `write` means the batch survives a crash (what `ack = "durable"`
    /// needs); if not, why, with the fix.
    fn durable_writes(&self) -> Result<(), String> {
        Err(format!(
            "the {} sink does not make its writes durable",
            self.name()
        ))
    }
    fn status(&self) -> SinkStatus {
        SinkStatus {
            healthy: true,
            detail: String::new(),
        }
    }
}
