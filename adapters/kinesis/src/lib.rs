//! # beacon-kinesis
//!
//! The engine's sink port on Amazon Kinesis Data Streams: every accepted event delivered at
//! least once, batched per core.
//!
//! # Layout
//!
//! | module | part |
//! |---|---|
//! | `config` | `KinesisConfig`: stream, endpoint, retry and spool bounds; the service's PutRecords limits |
//! | `record` | `Entry`, one record on its way to Kinesis: partition key and data |
//! | `sink` | `KinesisSink` (the engine's `Sink`) and each shard's `ShardKinesis`: in-flight bounds, spooling, replay |
//! | `sender` | on the sidecar: `PutRecords` calls, retrying failed records with capped exponential backoff and full jitter |
//! | `spool` | per-shard on-disk spool (glommio DMA files) and dead-letter files |
//! | `aggregate` | KPL aggregation per destination shard, from the stream's hash-key ranges |
//! | `metrics` | the adapter's Prometheus families |
//! | `reader` | reading a stream back, aggregates opened (`beacon tail --kinesis-stream`) |
//!
//! A shard owns every record's fate. It hands a sealed batch to the sidecar as a job while its
//! bytes and calls in flight are under their bounds; the sidecar sends it with `PutRecords`,
//! resends only the records that failed, and gives back whatever it could not deliver within
//! `record_ttl_ms` (or by shutdown). The shard spools what comes back, and what it cannot
//! send in time, to disk, and replays the spool in order when Kinesis takes records again.
//! Records that can never succeed (larger than a Kinesis record may be) go to a dead-letter
//! file. Only a full spool makes the engine answer 503.

pub mod aggregate;
pub mod config;
#[cfg(feature = "sink")]
pub mod metrics;
#[cfg(feature = "sink")]
pub mod reader;
mod record;
#[cfg(feature = "sink")]
mod sender;
#[cfg(feature = "sink")]
pub mod sink;
#[cfg(feature = "sink")]
pub mod spool;

pub use config::{KinesisConfig, PartitionKey, BATCH_LIMITS};
pub use record::Entry;
#[cfg(feature = "sink")]
pub use sink::KinesisSink;
