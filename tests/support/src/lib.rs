//! # beacon-test-support
//!
//! Fixtures for the integration tests of the binary (`tests/`) and of each adapter
//! (`adapters/*/tests/`): the real services, each started on a free port on 127.0.0.1 by the
//! fixture and stopped when it drops.
//!
//! | module | fixture |
//! |---|---|
//! | `redis_server` | `RedisServer`: a redis-server of its own, killable and restartable |
//! | `kinesis` | `Kinesalite` (kinesalite from npm) and `FaultProxy` (throttles and fails calls), with readers for what a stream holds |
//! | `dynamodb` | `Dynalite` (dynalite from npm) with the reference's event table and a reader of its items |
//! | `Sidecar` | a tokio runtime on its own thread, where adapters run their tasks |

pub mod dynamodb;
pub mod kinesis;
pub mod redis_server;

use std::path::{Path, PathBuf};

/// A tokio runtime on a thread of its own, as the binary's sidecar runs the adapters' tasks;
/// stopped and joined when dropped.
pub struct Sidecar {
    pub handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sidecar {
    pub fn start() -> Sidecar {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = runtime.block_on(stopped);
        });
        Sidecar {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The repository's root (where `deploy/` is), from whichever crate a test runs in.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("deploy").is_dir() && p.join("Cargo.lock").is_file())
        .expect("the test support crate lives inside the repository")
        .to_path_buf()
}
