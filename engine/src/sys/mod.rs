//! The engine's view of the operating system: start-up checks, CPU affinity, CPU clocks as
//! metrics, rate-limited warnings, time limits on a shard's timers, how io_uring rings are
//! made (`rings`), and the barrier a shard runs before it sleeps (`barrier`).

mod affinity;
mod barrier;
mod clock;
mod cpu_clock;
mod dir_lock;
mod log_every;
mod outage;
mod preflight;
mod rings;
mod time;

pub use affinity::{allowed_cpus, pin_current_thread};
pub use barrier::{choose_park_barrier, report_park_barrier, ParkBarriersCollector};
pub use clock::{mono_ms, now_ms, reanchor, wall_ms};
pub use cpu_clock::CpuClocks;
pub use dir_lock::{DirLock, DirLockError};
pub use log_every::LogEvery;
pub use outage::{Outage, OutageLine, OutageRule, Tally};
pub use preflight::{
    check as preflight, connection_descriptor_ceiling, descriptors, PreflightError,
    RESERVED_AT_RUN_TIME,
};
pub use rings::{report_rings, want_coop_taskrun, Rings, RingsCollector};
pub use time::timeout;
