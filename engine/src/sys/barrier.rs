//! A shard parks without interrupting the other CPUs: glommio's process-wide memory barrier
//! before each sleep becomes a full fence of the parking thread alone, through a link-time
//! wrapper of libc's `syscall` (x86_64 only).
//!
//! Why: before a glommio 0.9 executor sleeps (`Reactor::wait` in its
//! `sys/uring.rs`) it marks itself sleeping, calls `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`,
//! and looks at its cross-thread queues once more. That system call sends an IPI to every other
//! CPU running a beacon thread and waits for each to execute a barrier; on a virtual machine
//! each IPI is a trip through the hypervisor. At a fixed 20k req/s a shard parks between
//! requests: 0.1 barriers a request, 5% of beacon's CPU samples in the profile. As a local fence
//! CPU per request fell by about as much (the median of nine paired runs; single runs on a noisy
//! host spread wider than that), and the `membarrier` calls went to none (BENCHMARKS.md, "A park
//! without a process-wide barrier").
//!
//! Why a fence of the parking thread is enough here: the barrier pairs the sleeper's "I am
//! sleeping" store and its last look at the queues with a producer's store of a queued item and
//! its look at the flag, so that one of the two sees the other (else the item waits with nobody
//! woken). Every producer that can wake a glommio executor (a waker called on another thread,
//! a shared channel, glommio's blocking-thread pool) queues its item and then calls
//! `SleepNotifier::notify`, whose `compare_exchange` of the flag is a `lock cmpxchg` on x86_64,
//! and a locked instruction empties the producer's store buffer before it reads. With `mfence`
//! between the sleeper's store and its loads, both sides are store-fence-load: on x86's total
//! store order one of them must see the other's store. On ARM a relaxed compare-and-swap orders
//! nothing, so this wrapper exists for x86_64 only; other targets keep glommio's barrier.
//!
//! How: `engine/build.rs` passes `-Wl,--wrap=syscall` to the `beacon` binary (only there:
//! the standard library calls `syscall` too, for futexes, so every binary linked with the
//! argument must contain this wrapper, and `Server::start` keeps it in this one). All calls to
//! `syscall` then reach `__wrap_syscall` below: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`
//! while `park_barrier = "fence"` runs `mfence` and returns 0; every other call jumps on to libc's
//! `syscall` with every register as it came. Both kinds of barrier are counted.
//!
//! Upstream change that retires it: a glommio release whose `SleepNotifier::notify` does a
//! `SeqCst` fence (or a `SeqCst` read-modify-write) before it reads the flag and whose sleep path
//! does a `SeqCst` fence instead of `membarrier`, or that lets the embedder choose.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// `park_barrier = "fence"`: read by `__wrap_syscall` at every call it could replace.
#[no_mangle]
static BEACON_PARK_FENCE: AtomicBool = AtomicBool::new(true);
/// Barriers run as a fence of the parking thread.
#[no_mangle]
static BEACON_PARK_FENCES: AtomicU64 = AtomicU64::new(0);
/// Barriers passed on to the kernel (`park_barrier = "membarrier"`).
#[no_mangle]
static BEACON_PARK_MEMBARRIERS: AtomicU64 = AtomicU64::new(0);

/// `SYS_membarrier` and `MEMBARRIER_CMD_PRIVATE_EXPEDITED` (`<linux/membarrier.h>`), as the
/// wrapper compares them.
const SYS_MEMBARRIER: i64 = 324;
const CMD_PRIVATE_EXPEDITED: i32 = 1 << 3;

// A function written in assembly because it must leave every argument register of a variadic
// call untouched for the jump to libc (stable Rust cannot define a variadic function), and
// because it runs in front of every futex call the process makes. `.weak` lets a binary linked
// without the argument (whose `syscall` calls never come here) still link.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
std::arch::global_asm!(
    ".weak __real_syscall",
    ".globl __wrap_syscall",
    ".type __wrap_syscall,@function",
    "__wrap_syscall:",
    "cmp rdi, {sys}",
    "jne 3f",
    "cmp esi, {cmd}",
    "jne 3f",
    "cmp byte ptr [rip + BEACON_PARK_FENCE], 0",
    "je 2f",
    "mfence",
    "lock inc qword ptr [rip + BEACON_PARK_FENCES]",
    "xor eax, eax",
    "ret",
    "2:",
    "lock inc qword ptr [rip + BEACON_PARK_MEMBARRIERS]",
    "3:",
    "jmp __real_syscall@PLT",
    ".size __wrap_syscall, .-__wrap_syscall",
    sys = const SYS_MEMBARRIER,
    cmd = const CMD_PRIVATE_EXPEDITED,
);

/// How shards' park barriers ran since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParkBarriers {
    /// As a fence of the parking thread.
    pub fences: u64,
    /// As glommio's `membarrier` (the setting off, or a build without the wrapper: then these
    /// are not counted, and `wrapped` is false).
    pub membarriers: u64,
    /// Whether this binary routes `syscall` through the wrapper.
    pub wrapped: bool,
}

impl ParkBarriers {
    pub fn read() -> ParkBarriers {
        ParkBarriers {
            fences: BEACON_PARK_FENCES.load(Relaxed),
            membarriers: BEACON_PARK_MEMBARRIERS.load(Relaxed),
            wrapped: WRAPPED.load(Relaxed),
        }
    }
}

static WRAPPED: AtomicBool = AtomicBool::new(false);

/// Chooses the barrier for parks from now on (`park_barrier`), and finds out whether this binary
/// has the wrapper: one `membarrier(PRIVATE_EXPEDITED)` call, which the wrapper counts. Without
/// the wrapper it is a real barrier, which costs a few IPIs once (or fails harmlessly when the
/// process has not registered for it yet).
pub fn choose_park_barrier(fence: bool) {
    BEACON_PARK_FENCE.store(fence, Relaxed);
    let before = ParkBarriers::read();
    // SAFETY: a system call with plain integer arguments; it reads and writes no memory.
    unsafe {
        libc::syscall(
            SYS_MEMBARRIER as libc::c_long,
            CMD_PRIVATE_EXPEDITED as libc::c_int,
            0 as libc::c_int,
        )
    };
    let after = ParkBarriers::read();
    let counted = (after.fences + after.membarriers) > (before.fences + before.membarriers);
    WRAPPED.store(counted, Relaxed);
    // The probe is not a park.
    if counted {
        let probe = if fence {
            &BEACON_PARK_FENCES
        } else {
            &BEACON_PARK_MEMBARRIERS
        };
        probe.fetch_sub(1, Relaxed);
    }
}

/// Says in one line which barrier the shards park with.
pub fn report_park_barrier() {
    let b = ParkBarriers::read();
    if !cfg!(target_arch = "x86_64") {
        tracing::info!(
            "shards park with glommio's membarrier (the fence needs x86_64's store order)"
        );
    } else if !b.wrapped {
        tracing::warn!(
            "shards park with glommio's membarrier, an IPI to every other CPU running beacon: \
             this beacon was linked without -Wl,--wrap=syscall (built with \
             BEACON_LINK_RING_WRAP=0, or not by cargo); a `cargo build --release` of the \
             repository links it"
        );
    } else if BEACON_PARK_FENCE.load(Relaxed) {
        tracing::info!("shards park with a fence of their own, not a process-wide membarrier");
    } else {
        tracing::info!("shards park with glommio's membarrier (park_barrier = \"membarrier\")");
    }
}

/// `beacon_shard_park_barriers_total{kind=fence|membarrier}`, read at each scrape.
pub struct ParkBarriersCollector {
    /// Behind a lock: each scrape brings the counters up to the wrapper's counts.
    barriers: std::sync::Mutex<prometheus::IntCounterVec>,
    desc: Vec<prometheus::core::Desc>,
}

impl ParkBarriersCollector {
    pub fn new() -> Self {
        let opts = prometheus::Opts::new(
            "beacon_shard_park_barriers_total",
            "memory barriers before a shard sleeps: fence (the shard's own) or membarrier \
             (process-wide, an IPI to every other CPU running beacon); counted only in a binary \
             linked with the syscall wrapper",
        );
        let barriers = prometheus::IntCounterVec::new(opts, &["kind"]).expect("valid metric");
        ParkBarriersCollector {
            desc: prometheus::core::Collector::desc(&barriers)
                .into_iter()
                .cloned()
                .collect(),
            barriers: std::sync::Mutex::new(barriers),
        }
    }
}

impl Default for ParkBarriersCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl prometheus::core::Collector for ParkBarriersCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let b = ParkBarriers::read();
        let barriers = self.barriers.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, n) in [("fence", b.fences), ("membarrier", b.membarriers)] {
            let c = barriers.with_label_values(&[kind]);
            c.inc_by(n.saturating_sub(c.get()));
        }
        barriers.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The engine's own tests are linked without the argument (it reaches the `beacon` binary
    // only): a barrier call goes to the kernel, nothing is counted, and the probe says so.
    #[test]
    fn without_the_link_argument_the_probe_finds_no_wrapper() {
        choose_park_barrier(true);
        let b = ParkBarriers::read();
        assert!(!b.wrapped);
        assert_eq!((b.fences, b.membarriers), (0, 0));
    }
}
