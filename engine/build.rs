//! The engine's link arguments, for every binary and test that links the engine. This file is
//! the build script of the engine and of each package whose binaries or tests link it (the root
//! package, the adapters, the benches: `build = ".../engine/build.rs"` in their Cargo.toml),
//! because a build script's link arguments reach only its own package's targets.
//!
//! `--wrap=io_uring_queue_init_params` routes glommio's io_uring ring setup through
//! `engine/src/sys/rings.rs`, which adds `IORING_SETUP_COOP_TASKRUN`; that file says why, and
//! which glommio change would retire both.
//!
//! `--wrap=syscall`, for the `beacon` binary on x86_64 only, routes glommio's barrier before a
//! shard sleeps through `engine/src/sys/barrier.rs`, which runs it as a fence of the shard
//! alone; that file says why it is sound there and which glommio change would retire it. Only
//! that binary: the standard library calls `syscall` (futexes), so a binary linked with this
//! argument must contain the wrapper, and only `beacon` is sure to (`Server::start` uses it).
//!
//! `BEACON_LINK_RING_WRAP=0` at build time leaves both arguments out (for a linker without
//! `--wrap`): the binary then runs with glommio's own ring flags and barrier and says so at
//! start.
//!
//! `tests/support` does not use this script: its test `unwrapped_rings` is a binary linked the
//! way a build without the arguments would be, and checks that it still links and runs.

fn main() {
    println!("cargo:rerun-if-env-changed=BEACON_LINK_RING_WRAP");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let x86_64 = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    let off = std::env::var("BEACON_LINK_RING_WRAP").as_deref() == Ok("0");
    if linux && !off {
        println!("cargo:rustc-link-arg=-Wl,--wrap=io_uring_queue_init_params");
        if x86_64 && std::env::var("CARGO_PKG_NAME").as_deref() == Ok("beacon") {
            println!("cargo:rustc-link-arg-bin=beacon=-Wl,--wrap=syscall");
        }
    }
}
