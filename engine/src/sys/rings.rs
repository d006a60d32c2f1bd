//! io_uring rings that do not interrupt a running shard: `IORING_SETUP_COOP_TASKRUN` on the
//! rings glommio creates, through a link-time wrapper of liburing's ring setup.
//!
//! Why: glommio 0.9 (and glommio-ng 0.12) create their rings without setup flags. A completion
//! that arrives while a shard runs (the client's next request, handled in softirq on another
//! CPU) is then queued as task work with a signal, and the kernel kicks the shard's CPU with a
//! reschedule IPI. With `COOP_TASKRUN` (Linux 5.19) the kernel runs that work at the shard's next
//! entry into the kernel instead, which on the request path is never far away; glommio's sleep
//! (`io_uring_enter` with a wait) runs pending task work before it sleeps, so nothing waits on
//! it. Measured: 0.06-0.30 reschedule IPIs a request to none, and 10-30% less CPU a request
//! (BENCHMARKS.md, "Rings without completion interrupts"). One thing changes for glommio: the
//! completion of its preemption timer also waits for a kernel entry, which for a task that
//! makes no system calls is the return from the next timer interrupt, so `need_preempt` turns
//! true up to a scheduler tick later than the timer (a test below holds this).
//!
//! How: glommio builds liburing into its own static library, and all its ring setup goes
//! through one external C symbol, `io_uring_queue_init_params(entries, ring, params)`. The
//! engine's build script (`engine/build.rs`, shared by every package that links the engine)
//! passes `-Wl,--wrap=io_uring_queue_init_params` to the linker, which sends every call to
//! `__wrap_io_uring_queue_init_params` below and resolves `__real_io_uring_queue_init_params`
//! to liburing's function. The wrapper adds the flag to rings created without `IOPOLL` or
//! `SQPOLL` (glommio's main and latency rings, not its polled storage ring), and falls back to
//! the flags asked for when the kernel refuses it.
//!
//! A binary linked without the argument (another build system, `BEACON_LINK_RING_WRAP=0`) must
//! still link and run: the wrapper then is never called, and its reference to
//! `__real_io_uring_queue_init_params` is weak, so it resolves to nothing instead of failing the
//! link. `Rings::read` tells the three cases apart and `Server::start` says which one it got.
//!
//! Upstream change that retires this module: a glommio release that creates its rings with
//! `IORING_SETUP_COOP_TASKRUN` (falling back on `EINVAL`), or that lets `LocalExecutorBuilder`
//! set ring setup flags. Then the build script's link argument and this file go.

use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Ring setup flags of `<linux/io_uring.h>` (a stable kernel ABI).
pub const SETUP_IOPOLL: u32 = 1 << 0;
pub const SETUP_SQPOLL: u32 = 1 << 1;
pub const SETUP_COOP_TASKRUN: u32 = 1 << 8;

/// The start of the kernel's `struct io_uring_params`: the wrapper reads and writes `flags`
/// only. The layout is the kernel's ABI, unchanged since io_uring's first release.
#[repr(C)]
pub struct ParamsHead {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
}

/// liburing's ring setup: 0, or a negative errno.
pub type SetupFn = unsafe extern "C" fn(c_uint, *mut c_void, *mut ParamsHead) -> c_int;

/// `io_uring_coop_taskrun`: whether the wrapper adds the flag. Set before shards start.
static WANTED: AtomicBool = AtomicBool::new(true);
/// Set once the kernel refused the flag: later rings do not ask again.
static KERNEL_REFUSED: AtomicBool = AtomicBool::new(false);
static COOPERATIVE: AtomicU64 = AtomicU64::new(0);
static INTERRUPTING: AtomicU64 = AtomicU64::new(0);
static POLLED: AtomicU64 = AtomicU64::new(0);

/// Rings created since the process started, by how completions reach their thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rings {
    /// Created with `COOP_TASKRUN`: completions wait for the thread's next kernel entry.
    pub cooperative: u64,
    /// Created without it (switched off, or refused by the kernel): a completion may
    /// interrupt the running thread.
    pub interrupting: u64,
    /// `IOPOLL`/`SQPOLL` rings, left as glommio asked.
    pub polled: u64,
    /// Whether the kernel refused `COOP_TASKRUN` (older than 5.19).
    pub kernel_refused: bool,
    /// Whether this binary was linked with the wrapper (`--wrap=io_uring_queue_init_params`).
    pub wrapped: bool,
}

impl Rings {
    /// The counts so far, and whether this binary was linked with the wrapper.
    pub fn read() -> Rings {
        Rings {
            cooperative: COOPERATIVE.load(Relaxed),
            interrupting: INTERRUPTING.load(Relaxed),
            polled: POLLED.load(Relaxed),
            kernel_refused: KERNEL_REFUSED.load(Relaxed),
            wrapped: real_setup().is_some(),
        }
    }
}

/// Switches the flag on or off for rings created from now on (`io_uring_coop_taskrun`).
pub fn want_coop_taskrun(on: bool) {
    WANTED.store(on, Relaxed);
}

/// Says in one line how the shards' rings were made: with the flag (info), switched off by
/// the setting (info), refused by the kernel or not wrapped at all (a warning naming the fix).
pub fn report_rings(shards: usize) {
    let rings = Rings::read();
    if !rings.wrapped {
        tracing::warn!(
            "io_uring rings without COOP_TASKRUN: this beacon was linked without \
             -Wl,--wrap=io_uring_queue_init_params (built with BEACON_LINK_RING_WRAP=0, or not \
             by cargo), so a completion may interrupt a running shard; a `cargo build --release` \
             of the repository links it"
        );
    } else if rings.kernel_refused {
        tracing::warn!(
            interrupting = rings.interrupting,
            "io_uring rings without COOP_TASKRUN: the kernel refused the flag (it needs Linux \
             5.19 or newer), so a completion may interrupt a running shard"
        );
    } else if !WANTED.load(Relaxed) {
        tracing::info!(
            interrupting = rings.interrupting,
            "io_uring rings without COOP_TASKRUN (io_uring_coop_taskrun = false)"
        );
    } else {
        tracing::info!(
            cooperative = rings.cooperative,
            polled = rings.polled,
            shards,
            "io_uring rings with COOP_TASKRUN: completions wait for a shard's next kernel entry"
        );
    }
}

/// `beacon_io_uring_rings{setup}`: the rings made so far, by how completions reach their thread
/// (`coop_taskrun`, `interrupting`, `polled`), read at each scrape.
pub struct RingsCollector {
    rings: prometheus::IntGaugeVec,
}

impl RingsCollector {
    pub fn new() -> Self {
        let opts = prometheus::Opts::new(
            "beacon_io_uring_rings",
            "io_uring rings created: coop_taskrun (completions never interrupt a running shard), \
             interrupting (glommio's own flags: switched off, refused by the kernel, or a build \
             without the ring wrapper), polled (IOPOLL, left as they are)",
        );
        RingsCollector {
            rings: prometheus::IntGaugeVec::new(opts, &["setup"]).expect("valid metric"),
        }
    }
}

impl Default for RingsCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl prometheus::core::Collector for RingsCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.rings.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let r = Rings::read();
        for (setup, n) in [
            ("coop_taskrun", r.cooperative),
            ("interrupting", r.interrupting),
            ("polled", r.polled),
        ] {
            self.rings.with_label_values(&[setup]).set(n as i64);
        }
        self.rings.collect()
    }
}

/// The flags to ask the kernel for first, given the flags the caller asked for: the caller's
/// plus `COOP_TASKRUN`, unless the ring is polled (the kernel reaps those itself, no task work
/// to defer), the setting is off, or the kernel has refused it before. `None`: ask as given.
pub fn first_try(requested: u32, wanted: bool, kernel_refused: bool) -> Option<u32> {
    let polled = requested & (SETUP_IOPOLL | SETUP_SQPOLL) != 0;
    let has = requested & SETUP_COOP_TASKRUN != 0;
    (wanted && !kernel_refused && !polled && !has).then_some(requested | SETUP_COOP_TASKRUN)
}

/// How one ring setup went, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Cooperative,
    Interrupting,
    /// `COOP_TASKRUN` was refused with `EINVAL` and the ring made with the caller's flags.
    Refused,
    Polled,
    Failed,
}

/// Sets a ring up through `setup`, first with `COOP_TASKRUN` when `first_try` says so; if the
/// kernel answers `EINVAL` to that (older than 5.19), once more with the caller's own flags.
///
/// # Safety
/// `ring` and `params` are what `io_uring_queue_init_params` takes: `params` points to a valid,
/// writable `struct io_uring_params`, `ring` to room for a `struct io_uring`.
pub unsafe fn setup_ring(
    setup: SetupFn,
    entries: c_uint,
    ring: *mut c_void,
    params: *mut ParamsHead,
    wanted: bool,
    kernel_refused: bool,
) -> (c_int, Outcome) {
    let requested = (*params).flags;
    let polled = requested & (SETUP_IOPOLL | SETUP_SQPOLL) != 0;
    let mut refused = false;
    if let Some(flags) = first_try(requested, wanted, kernel_refused) {
        (*params).flags = flags;
        let rc = setup(entries, ring, params);
        if rc == 0 {
            return (rc, Outcome::Cooperative);
        }
        // The kernel copies nothing back when it refuses a setup; the caller's flags go back in
        // for the second try (and for the caller to see, whatever happens).
        (*params).flags = requested;
        if rc != -libc::EINVAL {
            return (rc, Outcome::Failed);
        }
        refused = true;
    }
    let rc = setup(entries, ring, params);
    let outcome = match (rc, refused, polled) {
        (0, true, _) => Outcome::Refused,
        (0, false, true) => Outcome::Polled,
        (0, false, false) => Outcome::Interrupting,
        _ => Outcome::Failed,
    };
    (rc, outcome)
}

fn count(outcome: Outcome) {
    match outcome {
        Outcome::Cooperative => COOPERATIVE.fetch_add(1, Relaxed),
        Outcome::Interrupting => INTERRUPTING.fetch_add(1, Relaxed),
        Outcome::Refused => {
            KERNEL_REFUSED.store(true, Relaxed);
            INTERRUPTING.fetch_add(1, Relaxed)
        }
        Outcome::Polled => POLLED.fetch_add(1, Relaxed),
        Outcome::Failed => 0,
    };
}

/// Where every call glommio makes to `io_uring_queue_init_params` arrives when the binary is
/// linked with `--wrap=io_uring_queue_init_params` (the module doc says why).
///
/// # Safety
/// Called by liburing's callers with `io_uring_queue_init_params`'s contract (`setup_ring`).
#[no_mangle]
pub unsafe extern "C" fn __wrap_io_uring_queue_init_params(
    entries: c_uint,
    ring: *mut c_void,
    params: *mut ParamsHead,
) -> c_int {
    let Some(setup) = real_setup() else {
        // Unreachable: only the link argument that resolves the weak symbol routes calls here.
        return -libc::ENOSYS;
    };
    let wanted = WANTED.load(Relaxed);
    let (rc, outcome) = setup_ring(
        setup,
        entries,
        ring,
        params,
        wanted,
        KERNEL_REFUSED.load(Relaxed),
    );
    count(outcome);
    rc
}

// The weak reference to liburing's function, as a pointer-sized word that the linker fills in:
// with `--wrap`, `__real_io_uring_queue_init_params` is `io_uring_queue_init_params`; without
// it the weak undefined symbol resolves to 0. Stable Rust has no weak linkage, so the
// directive and the reference are written in assembly, in one object: a `.weak` only applies
// to references made in the object that declares it. `.quad` is 8 bytes on every 64-bit ELF
// target (the only targets glommio builds for).
std::arch::global_asm!(
    ".weak __real_io_uring_queue_init_params",
    ".pushsection .data.rel.ro.beacon_real_ring_setup,\"aw\",@progbits",
    ".balign 8",
    ".globl beacon_real_ring_setup",
    ".hidden beacon_real_ring_setup",
    "beacon_real_ring_setup:",
    ".quad __real_io_uring_queue_init_params",
    ".popsection",
);

extern "C" {
    /// liburing's own `io_uring_queue_init_params`, or null without the link argument.
    static beacon_real_ring_setup: Option<SetupFn>;
}

/// liburing's ring setup, reachable only when the binary was linked with the wrapper.
fn real_setup() -> Option<SetupFn> {
    // Keeps the wrapper in every binary that reads the counters: its object is then always
    // part of the link, before glommio's reference to it is resolved.
    std::hint::black_box(__wrap_io_uring_queue_init_params as SetupFn);
    // SAFETY: a word the linker initialised and nothing writes; `Option<fn>` is null-optimised.
    unsafe { std::ptr::addr_of!(beacon_real_ring_setup).read() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn the_flag_goes_on_plain_rings_only() {
        assert_eq!(first_try(0, true, false), Some(SETUP_COOP_TASKRUN));
        assert_eq!(first_try(SETUP_IOPOLL, true, false), None);
        assert_eq!(first_try(SETUP_SQPOLL, true, false), None);
        assert_eq!(first_try(0, false, false), None, "switched off");
        assert_eq!(first_try(0, true, true), None, "refused before");
        let cq_size = 1 << 3;
        assert_eq!(
            first_try(cq_size, true, false),
            Some(cq_size | SETUP_COOP_TASKRUN)
        );
    }

    thread_local! {
        /// The flags each call of `fake_setup` saw.
        static CALLS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    }

    /// A kernel older than 5.19: `EINVAL` for any flag it does not know.
    unsafe extern "C" fn old_kernel(_: c_uint, _: *mut c_void, p: *mut ParamsHead) -> c_int {
        let flags = (*p).flags;
        CALLS.with_borrow_mut(|c| c.push(flags));
        if flags & SETUP_COOP_TASKRUN != 0 {
            -libc::EINVAL
        } else {
            0
        }
    }

    unsafe extern "C" fn new_kernel(_: c_uint, _: *mut c_void, p: *mut ParamsHead) -> c_int {
        CALLS.with_borrow_mut(|c| c.push((*p).flags));
        0
    }

    unsafe extern "C" fn out_of_memory(_: c_uint, _: *mut c_void, p: *mut ParamsHead) -> c_int {
        CALLS.with_borrow_mut(|c| c.push((*p).flags));
        -libc::ENOMEM
    }

    fn run(setup: SetupFn, requested: u32, wanted: bool) -> (c_int, Outcome, u32, Vec<u32>) {
        CALLS.with_borrow_mut(|c| c.clear());
        let mut params = ParamsHead {
            sq_entries: 0,
            cq_entries: 0,
            flags: requested,
        };
        // SAFETY: the fakes only touch `params`, which is valid for the call.
        let (rc, outcome) =
            unsafe { setup_ring(setup, 128, std::ptr::null_mut(), &mut params, wanted, false) };
        (rc, outcome, params.flags, CALLS.with_borrow(|c| c.clone()))
    }

    #[test]
    fn an_old_kernel_gets_the_flags_asked_for_on_the_second_try() {
        let (rc, outcome, left, calls) = run(old_kernel, 0, true);
        assert_eq!((rc, outcome), (0, Outcome::Refused));
        assert_eq!(calls, vec![SETUP_COOP_TASKRUN, 0]);
        assert_eq!(left, 0, "the caller's flags are back in its params");
    }

    #[test]
    fn a_current_kernel_takes_the_flag_at_once() {
        let (rc, outcome, _, calls) = run(new_kernel, 0, true);
        assert_eq!((rc, outcome), (0, Outcome::Cooperative));
        assert_eq!(calls, vec![SETUP_COOP_TASKRUN]);
        let (_, outcome, _, calls) = run(new_kernel, SETUP_IOPOLL, true);
        assert_eq!(outcome, Outcome::Polled);
        assert_eq!(calls, vec![SETUP_IOPOLL], "a polled ring is left alone");
        let (_, outcome, _, calls) = run(new_kernel, 0, false);
        assert_eq!(outcome, Outcome::Interrupting);
        assert_eq!(calls, vec![0], "switched off");
    }

    #[test]
    fn other_errors_are_the_callers_not_retried() {
        let (rc, outcome, left, calls) = run(out_of_memory, 0, true);
        assert_eq!((rc, outcome), (-libc::ENOMEM, Outcome::Failed));
        assert_eq!(calls, vec![SETUP_COOP_TASKRUN]);
        assert_eq!(left, 0);
    }

    /// glommio preempts a long-running task queue when its latency ring's preemption timer
    /// completes. With `COOP_TASKRUN` that completion reaches the ring only at the shard's next
    /// entry into the kernel, and a task that makes no system calls makes none: what delivers
    /// it then is the return from the next timer interrupt (the task work is flagged without an
    /// IPI, and every return to user space runs it). So a busy task still sees `need_preempt`,
    /// at most a scheduler tick late.
    #[test]
    fn a_busy_task_is_still_told_to_yield() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(64 << 10)
            .preempt_timer(std::time::Duration::from_millis(5))
            .make()
            .expect("a glommio executor starts here");
        let waited = ex.run(async {
            let start = std::time::Instant::now();
            // No system call in this loop: `Instant::now` reads the clock in user space.
            while !glommio::executor().need_preempt()
                && start.elapsed() < std::time::Duration::from_secs(2)
            {
                std::hint::spin_loop();
            }
            start.elapsed()
        });
        assert!(Rings::read().cooperative > 0);
        assert!(
            waited < std::time::Duration::from_millis(500),
            "need_preempt came {waited:?} after the task started (preempt timer 5 ms)"
        );
    }

    /// The engine's tests are linked with the wrapper (engine/build.rs): an executor made here
    /// gets cooperative rings from the real kernel, counted.
    #[test]
    fn this_test_binary_is_wrapped_and_its_rings_cooperate() {
        let before = Rings::read();
        assert!(
            before.wrapped,
            "engine/build.rs passes --wrap to the engine's tests"
        );
        let ex = crate::test_executor();
        ex.run(async {});
        let after = Rings::read();
        if after.kernel_refused {
            // A kernel older than 5.19: both rings fell back; nothing more to check here.
            assert!(after.interrupting >= before.interrupting + 2);
            return;
        }
        assert!(
            after.cooperative >= before.cooperative + 2,
            "{before:?} -> {after:?}"
        );
        assert!(after.polled > before.polled, "{before:?} -> {after:?}");
    }
}
