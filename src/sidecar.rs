//! The sidecar: one dedicated thread, not a shard, running a tokio runtime for the vendor SDKs
//! (Redis, AWS), which need tokio and `Send` futures. Shards never run tokio; they reach the
//! sidecar's tasks only through bounded channels. It is also the dedicated subscriber core:
//! pinned to a CPU of its own when the host has one to spare.

use std::thread::JoinHandle;

use anyhow::{Context, Result};

pub struct Sidecar {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    pub cpu: Option<usize>,
}

impl Sidecar {
    /// Starts the sidecar thread, pinned to `cpu` if given; `on_start` runs first on the thread.
    pub fn start(cpu: Option<usize>, on_start: impl FnOnce() + Send + 'static) -> Result<Sidecar> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("beacon-sidecar")
            .build()
            .context("cannot build the sidecar's tokio runtime")?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("beacon-sidecar".into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if let Err(e) = beacon_engine::pin_current_thread(cpu) {
                        tracing::warn!(cpu, error = %e, "cannot pin the sidecar to its CPU");
                    }
                }
                on_start();
                // The runtime drives every spawned task while it waits for the stop signal.
                let _ = runtime.block_on(stopped);
            })
            .context("cannot start the sidecar thread")?;
        Ok(Sidecar {
            handle,
            stop: Some(stop),
            thread: Some(thread),
            cpu,
        })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The CPU for the sidecar when none is configured: the first allowed CPU that no shard is
/// pinned to, if there is one.
pub fn spare_cpu(shards: usize) -> Option<usize> {
    beacon_engine::allowed_cpus().into_iter().nth(shards)
}
