//! Start-up checks that turn an environment beacon cannot run in into one line saying what to
//! change, instead of a panic deep inside the io_uring runtime.

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

/// Checks io_uring and the memlock limit for `shards` shards.
pub fn check(shards: usize, io_memory_bytes: usize) -> Result<(), PreflightError> {
    probe_io_uring().map_err(PreflightError::IoUring)?;
    let need = shards as u64 * (io_memory_bytes as u64 + RING_MEMORY_PER_SHARD_BYTES);
    if let Some(have) = memlock_limit() {
        if have < need {
            return Err(PreflightError::Memlock {
                have_kib: have / 1024,
                need_kib: need.div_ceil(1024),
                shards,
                io_memory: io_memory_bytes,
            });
        }
    }
    Ok(())
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
        check(2, 512 << 10).unwrap();
        if let Some(have) = memlock_limit() {
            let err = check(2, have as usize).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("ulimit -l"), "{msg}");
            assert!(msg.contains("io_memory_bytes"), "{msg}");
        }
    }
}
