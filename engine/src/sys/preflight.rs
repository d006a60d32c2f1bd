//! Start-up checks that turn an environment beacon cannot run in into one line saying what to
//! change, instead of a panic deep inside the io_uring runtime.

use crate::config::{
    ADMIN_CONNECTIONS_PER_SHARD, CONNECTIONS_DEFAULT, IO_MEMORY_DEFAULT_BYTES, IO_MEMORY_MIN_BYTES,
};

/// Descriptors kept for beacon's own use, never taken by connections: segment and spool
/// files, listeners, io_uring rings and eventfds, the sidecar's sockets, the log.
pub const OWN_DESCRIPTORS: u64 = 256;
/// Of those, the ones a running server keeps from connections whatever happens to the limit
/// (lowered while running, or descriptors leaked): a connection that would hold one of the last
/// this many is closed at once, so segment and spool files and the sidecar's sockets always
/// find a descriptor. A cap that start-up derived never comes near them.
pub const RESERVED_AT_RUN_TIME: u64 = OWN_DESCRIPTORS / 2;
/// Fewer connections per shard than this is not a server: the start stops instead.
const CONNECTIONS_MIN: u64 = 64;

/// Where the runtime learns which CPUs are online; without it, it panics.
const CPU_LIST: &str = "/sys/devices/system/cpu/online";

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
        "cannot read {CPU_LIST} ({0}): the runtime reads the CPU topology from sysfs; mount /sys \
         (container runtimes do; under chroot, bind-mount /sys and /proc)"
    )]
    Sysfs(std::io::Error),
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
    #[error(
        "the open-files limit (`ulimit -n`) is {have} but {shards} shards with {per_shard} connections \
         each (+{admin} for health checks) and {own} descriptors of beacon's own need {need}: raise \
         `ulimit -n` (systemd: LimitNOFILE=; docker: --ulimit nofile=; ECS: ulimits nofile) or lower \
         connections_per_shard_max{hint}"
    )]
    Nofile {
        have: u64,
        need: u64,
        shards: usize,
        per_shard: u64,
        admin: usize,
        own: u64,
        hint: String,
    },
}

/// A connection cap the open-files limit shrinks the default to is said at info down to this
/// many connections per shard (a tenth of the default), and as a warning below it.
const FIT_QUIETLY_MIN: u64 = CONNECTIONS_DEFAULT as u64 / 10;

/// Makes the open-files limit hold `shards` shards' connections plus beacon's own descriptors,
/// raising the soft limit toward the hard one as needed. Returns the connection cap per shard:
/// `configured` if set (and it fits), else the default or as many as the limit holds.
pub fn descriptors(shards: usize, configured: Option<usize>) -> Result<usize, PreflightError> {
    let per_shard = |cap: u64| cap + ADMIN_CONNECTIONS_PER_SHARD as u64;
    let need = |cap: u64| shards as u64 * per_shard(cap) + OWN_DESCRIPTORS;
    let wanted = configured.unwrap_or(CONNECTIONS_DEFAULT) as u64;
    let Some((soft, hard)) = nofile_limit() else {
        return Ok(wanted as usize);
    };
    let have = if soft < need(wanted) {
        raise_nofile(need(wanted).min(hard), hard).unwrap_or(soft)
    } else {
        soft
    };
    if have >= need(wanted) {
        return Ok(wanted as usize);
    }
    let fit = (have.saturating_sub(OWN_DESCRIPTORS) / shards as u64)
        .saturating_sub(ADMIN_CONNECTIONS_PER_SHARD as u64);
    if configured.is_some() || fit < CONNECTIONS_MIN {
        return Err(PreflightError::Nofile {
            have,
            need: need(wanted),
            shards,
            per_shard: wanted,
            admin: ADMIN_CONNECTIONS_PER_SHARD,
            own: OWN_DESCRIPTORS,
            hint: match fit >= 1 {
                true => format!(" to {fit}"),
                false => " or shards".into(),
            },
        });
    }
    // The default sized to the machine is no fault of the user's: a line at info. A limit so
    // low that the cap is a small fraction of the default is worth a warning.
    let message = format_args!(
        "the open-files limit holds {fit} connections per shard, not the default \
         {CONNECTIONS_DEFAULT}: using that (raise `ulimit -n` or set connections_per_shard_max \
         to choose)"
    );
    if fit >= FIT_QUIETLY_MIN {
        tracing::info!(
            shards,
            nofile = have,
            connections_per_shard_max = fit,
            "{message}"
        );
    } else {
        tracing::warn!(
            shards,
            nofile = have,
            connections_per_shard_max = fit,
            "{message}"
        );
    }
    Ok(fit as usize)
}

/// The lowest descriptor number a connection may not hold: the soft open-files limit now, less
/// `RESERVED_AT_RUN_TIME`. Descriptors are handed out lowest first, so a connection given this
/// number or a higher one means fewer than that many are left. None when unlimited.
pub fn connection_descriptor_ceiling() -> Option<u64> {
    nofile_limit().map(|(soft, _)| soft.saturating_sub(RESERVED_AT_RUN_TIME))
}

/// The soft and hard limits of `resource`, or None when the soft one is unlimited.
fn rlimit(resource: libc::__rlimit_resource_t) -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some((lim.rlim_cur, lim.rlim_max))
}

/// The soft and hard RLIMIT_NOFILE, or None when unlimited.
fn nofile_limit() -> Option<(u64, u64)> {
    rlimit(libc::RLIMIT_NOFILE)
}

/// Sets the soft RLIMIT_NOFILE to `to`, keeping the hard limit `hard`; the new soft limit.
fn raise_nofile(to: u64, hard: u64) -> Option<u64> {
    let lim = libc::rlimit {
        rlim_cur: to,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads `lim`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return None;
    }
    Some(lim.rlim_cur)
}

/// Checks io_uring and the memlock limit for `shards` shards; the registered memory each shard
/// gets: `configured` if set (and it fits), else the default or as much as the limit holds.
pub fn check(shards: usize, configured: Option<usize>) -> Result<usize, PreflightError> {
    std::fs::read_to_string(CPU_LIST).map_err(PreflightError::Sysfs)?;
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
    rlimit(libc::RLIMIT_MEMLOCK).map(|(soft, _)| soft)
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
