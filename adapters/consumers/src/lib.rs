//! # beacon-consumers
//!
//! The half of the pipeline behind the engine, as the reference has it, without its losses and
//! duplicates:
//! - the **event persister** reads the event stream and stores every event in DynamoDB, under
//!   its message id, so a retried batch rewrites the same items;
//! - the **core-data updater** reads the core-data update stream and writes each change to
//!   Redis (the hash the engines read and a `PUBLISH` on their channel, in one script that
//!   refuses older versions).
//!
//! Each handler takes a batch of stream records in order and says how far it got
//! (`Outcome`): the records it could not decode (reported, counted, logged with their sequence
//! numbers; never silently dropped) and the first record it could not write (so the batch is
//! retried from there). The same handlers run two ways:
//! - as a Lambda behind a Kinesis event source mapping (`lambda`, the `bootstrap` binary),
//!   answering with `batchItemFailures`;
//! - as a long-running consumer polling the stream itself (`poll`, `beacon consume …`),
//!   checkpointing locally and writing undecodable records to a failure directory.
//!
//! # Layout
//!
//! | module | part |
//! |---|---|
//! | `batch` | `InRecord` (one stream record), `Outcome`, `Counters`, KPL aggregates opened |
//! | `persist` | the event persister: records → DynamoDB items → `BatchWriteItem` with retries |
//! | `update` | the core-data updater: JSON messages → `beacon_redis::writer` |
//! | `poll` | the polling consumer: shards, iterators, checkpoints, failure directory |
//! | `lambda` | Kinesis events in, `batchItemFailures` out |

pub mod batch;
pub mod lambda;
pub mod persist;
pub mod poll;
pub mod update;

pub use batch::{Counters, InRecord, Outcome};
pub use persist::Persister;
pub use update::Updater;

/// What both handlers are to the two ways of running them.
#[allow(async_fn_in_trait)]
pub trait Handler {
    /// Handles `records` (in stream order, all from one shard) and says how far it got.
    async fn handle(&self, records: &[InRecord]) -> Outcome;
    /// What the handler has counted so far.
    fn counters(&self) -> &Counters;
}
