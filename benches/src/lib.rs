//! beacon's benchmark crate. The criterion micro-benches live in `benches/hot_path.rs`
//! (`cargo bench -p beacon-benches`); `compare` and `kinesis` beside this crate are the
//! end-to-end benchmarks (see BENCHMARKS.md).
