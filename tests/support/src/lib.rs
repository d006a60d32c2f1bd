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

pub mod kinesis;
pub mod redis_server;

use std::path::{Path, PathBuf};

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
