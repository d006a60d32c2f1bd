//! The server: checks the environment, binds one SO_REUSEPORT socket per shard, starts one
//! pinned glommio executor per shard, and turns SIGTERM/SIGINT into an orderly shutdown.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{EngineConfig, FieldError, ParkBarrier};
use crate::metrics::Metrics;
use crate::ports::{CoreDataSource, Sink};
use crate::shard::{self, ShardError, ShardInputs};
use crate::state::Shared;
use crate::sys::{
    allowed_cpus, choose_park_barrier, descriptors, preflight, report_park_barrier, report_rings,
    want_coop_taskrun, DirLock, DirLockError, PreflightError,
};

/// Connections the kernel queues per shard socket before the shard accepts them.
const LISTEN_BACKLOG: i32 = 4096;
/// How long the start waits for each shard's executor before it reports how the rings were made.
const SHARD_START_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<FieldError>),
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    DataDir(#[from] DirLockError),
    #[error(
        "cannot listen on {addr}: another process is listening there (`ss -ltnp 'sport = :{port}'` \
         shows which): stop it, or give this beacon another --listen",
        port = addr.port()
    )]
    AddrInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start shard executor: {0}")]
    Executor(String),
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// Every shard stopped, some with accepted events still held locally by the sink (the
    /// shards' `SinkError::Stranded`, summed).
    #[error(
        "stopped with {records} accepted events not delivered: they are in {}: {why}; a beacon \
         started on the same data directory sends them",
        places.join(", ")
    )]
    Stranded {
        records: u64,
        places: Vec<String>,
        why: String,
    },
}

/// A running server. `wait` blocks until it has shut down.
pub struct Server {
    /// Held until the server has stopped: no other beacon writes this data directory.
    _data_dir: DirLock,
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    handles: Vec<glommio::ExecutorJoinHandle<Result<(), ShardError>>>,
}

impl Server {
    /// Validates `cfg`, checks the environment, binds and starts every shard.
    /// `metrics` is where the engine registers its metrics; adapters register theirs in the
    /// same registry, so `/metrics` shows everything.
    pub fn start(
        cfg: EngineConfig,
        core_data: Arc<dyn CoreDataSource>,
        sink: Arc<dyn Sink>,
        metrics: Metrics,
    ) -> Result<Server, ServerError> {
        cfg.validate_for_sink(sink.batch_limits())
            .map_err(ServerError::Config)?;
        if cfg.ack == crate::config::Ack::Durable {
            sink.durable_writes().map_err(|why| {
                ServerError::Config(vec![crate::FieldError {
                    field: "ack".into(),
                    value: "\"durable\"".into(),
                    allowed: why,
                }])
            })?;
        }
        let shards = cfg.shard_count();
        let io_memory = preflight(shards, cfg.io_memory_bytes)?;
        let mut cfg = cfg;
        cfg.connections_per_shard_max = Some(descriptors(shards, cfg.connections_per_shard_max)?);
        let data_dir = DirLock::acquire(&cfg.data_dir)?;
        let (sockets, local_addr) = bind_all(cfg.listen, shards)?;
        let (admin_sockets, admin_addr): (Vec<Option<OwnedFd>>, _) = match cfg.admin_listen {
            Some(addr) => {
                let (sockets, bound) = bind_all(addr, shards)?;
                (sockets.into_iter().map(Some).collect(), Some(bound))
            }
            None => ((0..shards).map(|_| None).collect(), None),
        };
        let shared = Arc::new(Shared::new(cfg, sink.clone(), core_data.clone(), metrics));
        let cfg = shared.cfg();
        let mesh = MeshBuilder::full(shards, cfg.mesh_channel_capacity);
        let cpus = allowed_cpus();
        want_coop_taskrun(cfg.io_uring_coop_taskrun);
        choose_park_barrier(cfg.park_barrier == ParkBarrier::Fence);
        // Each shard says when its executor (and so its rings) exists, for the report below.
        let (started, shards_started) = std::sync::mpsc::sync_channel(shards);
        let mut handles = Vec::with_capacity(shards);
        for (i, (listener, admin_listener)) in sockets.into_iter().zip(admin_sockets).enumerate() {
            let placement = if cfg.pin_shards && !cpus.is_empty() {
                Placement::Fixed(cpus[i % cpus.len()])
            } else {
                Placement::Unbound
            };
            let inputs = ShardInputs {
                shared: shared.clone(),
                mesh: mesh.clone(),
                listener,
                admin_listener,
                core_data: core_data.clone(),
                sink: sink.clone(),
            };
            let started = started.clone();
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("beacon-shard-{i}"))
                .io_memory(io_memory)
                .spin_before_park(Duration::from_micros(cfg.spin_before_park_us))
                .spawn(move || {
                    let _ = started.send(());
                    shard::run(inputs)
                })
                .map_err(|e| ServerError::Executor(e.to_string()))?;
            handles.push(handle);
        }
        drop(started);
        // A shard whose executor failed never sends; its error comes out of `wait`.
        for _ in 0..shards {
            if shards_started.recv_timeout(SHARD_START_WAIT).is_err() {
                break;
            }
        }
        report_rings(shards);
        report_park_barrier();
        Ok(Server {
            _data_dir: data_dir,
            shared,
            local_addr,
            admin_addr,
            handles,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's bound address, when `admin_listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn shards(&self) -> usize {
        self.shared.shards()
    }

    /// A handle that starts the shutdown from any thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.shared.clone())
    }

    /// Blocks until every shard has stopped; the first shard error, if any, else the events
    /// the shards' sinks could not deliver, summed over the shards.
    pub fn wait(self) -> Result<(), ServerError> {
        let mut first_err = None;
        let mut stranded: Option<ServerError> = None;
        for h in self.handles {
            let result = match h.join() {
                Ok(r) => r.map_err(ServerError::from),
                Err(e) => Err(ServerError::Executor(e.to_string())),
            };
            match result {
                Ok(()) => {}
                Err(ServerError::Shard(ShardError::Close {
                    source:
                        crate::ports::SinkError::Stranded {
                            records,
                            place,
                            why,
                        },
                    ..
                })) => add_stranded(&mut stranded, records, place, why),
                Err(e) => {
                    // One shard failing stops the others: a partial engine would silently drop
                    // the campaigns it owns.
                    self.shared.stop();
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err.or(stranded) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn add_stranded(sum: &mut Option<ServerError>, records: u64, place: String, why: String) {
    match sum {
        Some(ServerError::Stranded {
            records: total,
            places,
            ..
        }) => {
            *total += records;
            places.push(place);
        }
        _ => {
            *sum = Some(ServerError::Stranded {
                records,
                places: vec![place],
                why,
            })
        }
    }
}

#[derive(Clone)]
pub struct Stopper(Arc<Shared>);

impl Stopper {
    pub fn stop(&self) {
        self.0.stop();
    }
}

/// Fails if another process listens on `addr`. SO_REUSEPORT would let the shards join that
/// process's sockets silently, and the kernel would split the traffic between the two, so
/// first a socket without it tries the address: only a listener there makes that bind fail.
fn check_free(addr: SocketAddr) -> Result<(), ServerError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let err = |source| ServerError::Bind { addr, source };
    let probe =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    probe.set_reuse_address(true).map_err(err)?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(ServerError::AddrInUse { addr }),
        Err(e) => Err(err(e)),
    }
}

/// Binds `shards` sockets to `addr` with SO_REUSEPORT. With port 0 the first socket picks the
/// port and the others join it.
fn bind_all(addr: SocketAddr, shards: usize) -> Result<(Vec<OwnedFd>, SocketAddr), ServerError> {
    check_free(addr)?;
    let mut bound = addr;
    let mut sockets = Vec::with_capacity(shards);
    for _ in 0..shards {
        let err = |source| ServerError::Bind {
            addr: bound,
            source,
        };
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(err)?;
        socket.set_reuse_port(true).map_err(err)?;
        socket.set_reuse_address(true).map_err(err)?;
        socket.bind(&bound.into()).map_err(err)?;
        socket.listen(LISTEN_BACKLOG).map_err(err)?;
        // The shard accepts with accept4 until the backlog is empty (shard::accept_now).
        socket.set_nonblocking(true).map_err(err)?;
        if bound.port() == 0 {
            bound = socket
                .local_addr()
                .map_err(err)?
                .as_socket()
                .expect("a TCP socket has an inet address");
        }
        sockets.push(OwnedFd::from(socket));
    }
    Ok((sockets, bound))
}
