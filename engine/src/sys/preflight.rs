//! Start-up checks that turn an environment beacon cannot run in into one line saying what to
//! change, instead of a panic deep inside the io_uring runtime.

use crate::config::{IO_MEMORY_DEFAULT_BYTES, IO_MEMORY_MIN_BYTES};

/// io_uring ring memory per shard: the three rings glommio sets up, rounded up generously.
const RING_MEMORY_PER_SHARD_BYTES: u64 = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "io_uring is not available ({0}): beacon needs io_uring. On AWS run on the ECS EC2 launch type \
         or plain EC2 (Fargate's seccomp profile blocks io_uring); under Docker or Kubernetes use a \
         seccomp profile that allows io_uring_setup, io_uring_enter and io_uring_register; on Linux \
         check that kernel.io_uring_disabled is 0 (kernel 5.8 or newer)"
    )]
    IoUring(std::io::Error),
    #[error(
        "the locked-memory limit is {have_kib} KiB but {shards} shards with io_memory_bytes = {io_memory} \
         need about {need_kib} KiB: raise `ulimit -l` (systemd: LimitMEMLOCK=; docker: --ulimit memlock=; \
         ECS: ulimits memlock) or lower io_memory_bytes or shards"
    )]
    Memlock {
        have_kib: u64,
        need_kib: u64,
        shards: usize,
        io_memory: usize,
    },
}

/// Checks io_uring and the memlock limit for `shards` shards; the registered memory each shard
/// gets: `configured` if set (and it fits), else the default or as much as the limit holds.
pub fn check(shards: usize, configured: Option<usize>) -> Result<usize, PreflightError> {
    probe_io_uring().map_err(PreflightError::IoUring)?;
    let io_memory = match (configured, memlock_limit()) {
        (Some(io), _) => io,
        (None, None) => IO_MEMORY_DEFAULT_BYTES,
        (None, Some(have)) => {
            let per_shard = (have / shards as u64).saturating_sub(RING_MEMORY_PER_SHARD_BYTES);
            let fit = (per_shard as usize / 4096 * 4096).min(IO_MEMORY_DEFAULT_BYTES);
            if (IO_MEMORY_MIN_BYTES..IO_MEMORY_DEFAULT_BYTES).contains(&fit) {
                tracing::warn!(
                    shards,
                    memlock_kib = have / 1024,
                    io_memory_bytes = fit,
                    "the locked-memory limit holds {} KiB of io_uring buffers per shard, not the \
                     default 512 KiB: using that (raise `ulimit -l` or set io_memory_bytes to choose)",
                    fit / 1024
                );
            }
            fit.max(IO_MEMORY_MIN_BYTES)
        }
    };
    let need = shards as u64 * (io_memory as u64 + RING_MEMORY_PER_SHARD_BYTES);
    if let Some(have) = memlock_limit() {
        if have < need {
            return Err(PreflightError::Memlock {
                have_kib: have / 1024,
                need_kib: need.div_ceil(1024),
                shards,
                io_memory,
            });
        }
    }
    Ok(io_memory)
}

/// Sets up and tears down a one-entry ring.
fn probe_io_uring() -> std::io::Result<()> {
    // struct io_uring_params is 120 bytes; zeroed means "no flags".
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes `params`, a buffer of the size the kernel expects.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a descriptor we own and close once.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// The soft RLIMIT_MEMLOCK in bytes, or None when unlimited.
fn memlock_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_passes_with_small_io_memory_and_fails_with_huge() {
        assert_eq!(check(2, Some(512 << 10)).unwrap(), 512 << 10);
        let chosen = check(2, None).unwrap();
        assert!((IO_MEMORY_MIN_BYTES..=IO_MEMORY_DEFAULT_BYTES).contains(&chosen));
        if let Some(have) = memlock_limit() {
            // Many shards share the limit: each gets less, never less than the minimum.
            let shards = (have / (RING_MEMORY_PER_SHARD_BYTES + (256 << 10))).max(1) as usize;
            let fit = check(shards, None).unwrap();
            assert!(fit < IO_MEMORY_DEFAULT_BYTES || shards == 1, "{fit}");
            let err = check(2, Some(have as usize)).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("ulimit -l"), "{msg}");
            assert!(msg.contains("io_memory_bytes"), "{msg}");
        }
    }
}
