//! # beacon-benches
//!
//! beacon's benchmark crate: the criterion micro-benches (`benches/hot_path.rs`, each against a
//! baseline in the same group), the `beacon-bench` tool, and beside the crate the end-to-end
//! scripts `compare` (beacon against nginx) and `kinesis` (see BENCHMARKS.md).
//!
//! # Layout
//!
//! | module | part |
//! |---|---|
//! | `load` | `beacon-bench load`: open-loop constant-rate HTTP/1.1 load, HdrHistogram latencies |
//! | `scrape` | the engine's `/metrics`: CPU, requests, events, bytes, batches |
//! | `capacity` | `beacon-bench capacity`: steps the rate up, finds the highest within the SLO |
//! | `plan` | cores, instances, Kinesis shards and monthly cost for a peak; the price table |
//! | `step` | one step's figures, shared by `capacity` and `plot` |
//! | `plot` | the SVG of latency percentiles against offered rate |
//!
//! A capacity run: `capacity` drives `load` one step at a time, `scrape`s around each step,
//! hands the best passing step to `plan`, and draws every step with `plot`.

pub mod capacity;
pub mod load;
pub mod plan;
pub mod plot;
pub mod scrape;
pub mod step;
