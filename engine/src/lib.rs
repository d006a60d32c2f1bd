//! # beacon-engine
//!
//! The real-time half of an ad-tracking pipeline as a thread-per-core engine: one glommio
//! executor per core, each with its own listening socket, L1 cache and event batch. No vendor
//! SDK lives here; Redis, Kinesis and friends plug in through the `ports`.
//!
//! # Layout
//!
//! Layers, top to bottom; a module imports only from the layers below it. A request flows
//! down through them.
//!
//! | module | part |
//! |---|---|
//! | `server` | validates the config, preflight, one SO_REUSEPORT socket and one pinned executor per shard |
//! | `shard` | a shard's accept loop, connections, background tasks and shutdown sequence |
//! | `http/` | hyper on glommio (`rt`), routes, a request head into `track::Meta` (`request`), responses |
//! | `track/` | owner or local lookup, the shard-to-shard protocol (`mesh`) and its handler (`peer`), the event's acceptance |
//! | `batch/`, `state`, `metrics` | per-shard batches in front of the sink; what shards share; metric families |
//! | `cache/` | the L1: per-shard papaya maps (`map`) and their owner's single-flight loads and eviction (`owner`) |
//! | `embedded/` | core data from a file or built-in samples; segment files; record framing |
//! | `ports/` | the core data and sink traits adapters implement, and what crosses them |
//! | `model/` | campaign, event and record formats, request kinds, campaign -> shard placement |
//! | `config`, `sys/` | settings and their limits; preflight, CPU affinity and clocks, timeouts |
//!
//! The public surface is below: the server and its config, the ports and the model (for
//! adapters), the embedded implementations, and a few system helpers the binary needs.

mod batch;
mod cache;
pub mod config;
pub mod embedded;
mod http;
pub mod metrics;
pub mod model;
pub mod ports;
mod server;
mod shard;
mod state;
mod sys;
mod track;

pub use config::{EngineConfig, FieldError, RangeCheck};
pub use server::{Server, ServerError, Stopper};
pub use sys::{
    allowed_cpus, pin_current_thread, timeout, Outage, OutageLine, OutageRule, Rings, Tally,
};

/// For `log_outage!` in the adapters: the engine's `tracing`.
#[doc(hidden)]
pub use tracing as __tracing;

/// Internals the micro-benchmarks measure on their own (`benches/benches/hot_path.rs`); not
/// a stable interface.
#[doc(hidden)]
pub mod bench_api {
    pub use crate::batch::OpenBatch;
    pub use crate::cache::{L1Map, L1Owner, Probe};
    pub use crate::sys::now_ms;
}

/// A glommio executor for unit tests that need one (timers, tasks, DMA files).
#[cfg(test)]
pub(crate) fn test_executor() -> glommio::LocalExecutor {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(64 << 10)
        .make()
        .expect("a glommio executor starts here")
}
