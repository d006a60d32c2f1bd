//! One step of a capacity run: what `capacity` measures and `plot` draws.

use serde::Serialize;

use crate::load;

/// One step: the load it offered, what the client saw, what the engine spent.
#[derive(Serialize, Clone, Debug)]
pub struct Step {
    pub report: load::Report,
    pub passed: bool,
    /// Why it failed, if it did.
    pub verdict: String,
    pub engine_cpu_us_per_request: f64,
    pub process_cpu_us_per_request: f64,
    /// Share of the engine's cores busy (shard CPU / seconds / shards).
    pub engine_cpu_utilization: f64,
    pub events_per_request: f64,
    pub bytes_per_event: f64,
    pub batches_per_event: f64,
}
