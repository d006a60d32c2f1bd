//! # beacon-engine
//!
//! The real-time half of an ad-tracking pipeline as a thread-per-core engine: one glommio
//! executor per core, each with its own listening socket, L1 cache and event batch. No vendor
//! SDK lives here; Redis, Kinesis and friends plug in through the ports (`core_data`, `sink`).
//!
//! # Layout
//!
//! A request flows top to bottom:
//!
//! | module | part |
//! |---|---|
//! | `server` | preflight, one SO_REUSEPORT socket and one pinned executor per shard, signals |
//! | `shard` | a shard's accept loop, connections, shutdown sequence |
//! | `rt` | hyper 1.x on glommio: stream adapter and timer |
//! | `http` | routes; a tracking request becomes a `track::Meta` |
//! | `track` | owner lookup, forwarding (`routing`), L1 lookup, event acceptance |
//! | `mesh`, `pending` | shard-to-shard messages and the replies awaited from peers |
//! | `routing` | `owner = xxh3_64(campaign id) % shards` |
//! | `l1` | per-shard papaya map: TTL, negative entries, single-flight, stale-while-revalidate, CLOCK |
//! | `core_data` | port: where a miss is looked up; embedded JSON implementation |
//! | `event` | the event record (rkyv, versioned) and the reference's protobuf and JSON |
//! | `batcher` | per-shard batches sealed by count, bytes or linger, bounded queue to the sink |
//! | `sink`, `segment` | port: where sealed batches go; embedded segment-file implementation |
//! | `metrics`, `cpu`, `reply`, `config`, `preflight`, `campaign` | the rest |

pub mod batcher;
pub mod campaign;
pub mod config;
pub mod core_data;
pub mod cpu;
pub mod event;
pub mod http;
pub mod l1;
pub mod mesh;
pub mod metrics;
pub mod pending;
pub mod preflight;
pub mod reply;
pub mod routing;
pub mod rt;
pub mod segment;
pub mod server;
pub mod shard;
pub mod sink;
pub mod track;

pub use config::EngineConfig;
pub use server::{Server, ServerError, Stopper};

/// A glommio executor for unit tests that need one (timers, tasks, DMA files).
#[cfg(test)]
pub(crate) fn test_executor() -> glommio::LocalExecutor {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(64 << 10)
        .make()
        .expect("a glommio executor starts here")
}
