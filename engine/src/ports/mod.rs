//! The engine's ports: the traits an adapter implements to be the engine's core data store
//! (`CoreDataSource`) or its sink (`Sink`), and what crosses them.

mod core_data;
mod sink;

pub use core_data::{
    CoreDataError, CoreDataLookup, CoreDataSource, CoreDataStatus, CoreDataUpdate, LookupFuture,
    UpdateStream,
};
pub use sink::{
    BatchLimits, LocalBoxFuture, RecordMeta, SealedBatch, ShardSink, Sink, SinkError, SinkStatus,
};
