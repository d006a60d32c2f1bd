//! What the engine runs on with no outside system: campaigns from a file (or the built-in
//! samples, or synthetic ones for benchmarks) as core data, and segment files as the sink.

mod campaigns;
mod frame;
mod segment;
mod synthetic;

pub use campaigns::{EmbeddedCoreData, LoadError, SAMPLE_CAMPAIGNS_JSON};
pub use frame::{put_frame, read_frame, FrameError, FRAME_HEADER_BYTES};
pub use segment::{read_all, read_segment, segments_in, ReadProblem, SegmentSink};
pub use synthetic::{synthetic_campaigns, SYNTHETIC_ID_FIRST};
