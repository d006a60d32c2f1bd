//! The engine's view of the operating system: start-up checks, CPU affinity, CPU clocks as
//! metrics, rate-limited warnings, and time limits on a shard's timers.

mod affinity;
mod clock;
mod cpu_clock;
mod dir_lock;
mod log_every;
mod preflight;
mod time;

pub use affinity::{allowed_cpus, pin_current_thread};
pub use clock::{mono_ms, now_ms, reanchor, wall_ms};
pub use cpu_clock::CpuClocks;
pub use dir_lock::{DirLock, DirLockError};
pub use log_every::LogEvery;
pub use preflight::{
    check as preflight, connection_descriptor_ceiling, descriptors, PreflightError,
    RESERVED_AT_RUN_TIME,
};
pub use time::timeout;
