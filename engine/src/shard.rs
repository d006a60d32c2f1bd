//! One shard: a pinned glommio executor that accepts connections on its own SO_REUSEPORT
//! socket, serves them with hyper, owns one L1 map and one batch, and answers its peers.
//!
//! Shutdown, once the server's flag is set: stop accepting; ask every connection to finish its
//! in-flight request and close (hyper's graceful shutdown); wait up to `shutdown_grace_ms` for
//! them; wait until every shard is done with HTTP (peers may still forward requests here until
//! then); seal the open batch, let the writer drain the queue into the sink, close the sink.

use std::cell::Cell;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::io::FromRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_listener::Event;
use futures_lite::future;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::net::{TcpListener, TcpStream};
use hyper::server::conn::http1;

use crate::batch::Batcher;
use crate::cache::{Applied, L1Owner};
use crate::config::ADMIN_CONNECTIONS_PER_SHARD;
use crate::http::{Door, HyperStream, ShardTimer};
use crate::metrics::{BadRequest, ShardMetrics};
use crate::model::Route;
use crate::ports::{CoreDataSource, Sink, SinkError, UpdateStream};
use crate::state::Shared;
use crate::sys::{connection_descriptor_ceiling, now_ms, LogEvery, RESERVED_AT_RUN_TIME};
use crate::track::{spawn_receivers, MeshMsg, PendingTable, ShardCtx};

/// How often a shard looks at the server's shutdown flag.
const SHUTDOWN_POLL_MS: u64 = 20;
/// Pause after a failed accept (for example out of file descriptors) before the next one.
const ACCEPT_RETRY_MS: u64 = 10;
/// Pause after every `ACCEPTS_PER_PAUSE` accepts: the shortest timer, whose only purpose is a
/// pass through the reactor.
const ACCEPT_PAUSE: Duration = Duration::from_micros(1);
/// Connections accepted back to back before the accept loop passes through the reactor.
const ACCEPTS_PER_PAUSE: usize = 8;

/// How often the accept loop reads the open-files limit again (it can change while running).
const NOFILE_REREAD_MS: u64 = 100;
/// At most one log line per this many seconds for a repeating accept failure or refusal.
const WARN_EVERY_SECS: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("shard could not join the channel mesh")]
    Mesh,
    #[error("shard {shard} could not open its sink: {source}")]
    Sink { shard: usize, source: SinkError },
    #[error("shard {shard} could not close its sink: {source}")]
    Close { shard: usize, source: SinkError },
}

pub struct ShardInputs {
    pub shared: Arc<Shared>,
    pub mesh: MeshBuilder<MeshMsg, Full>,
    pub listener: OwnedFd,
    /// This shard's socket on `admin_listen`, when set.
    pub admin_listener: Option<OwnedFd>,
    pub core_data: Arc<dyn CoreDataSource>,
    pub sink: Arc<dyn Sink>,
}

pub async fn run(inputs: ShardInputs) -> Result<(), ShardError> {
    let ShardInputs {
        shared,
        mesh,
        listener,
        admin_listener,
        core_data,
        sink,
    } = inputs;
    let (senders, mut receivers) = mesh.join().await.map_err(|_| ShardError::Mesh)?;
    // glommio numbers mesh peers by executor id; that number is this shard's id everywhere.
    let id = senders.peer_id();
    let cfg = shared.cfg();
    shared
        .metrics()
        .cpu
        .register_current(&format!("shard-{id}"));
    let metrics = Rc::new(shared.metrics().for_shard(id));
    let l1 = L1Owner::new(
        shared.map(id).clone(),
        cfg.l1_entries_per_shard(),
        core_data.for_shard(id),
    );
    let shard_sink = sink
        .open(id)
        .await
        .map_err(|source| ShardError::Sink { shard: id, source })?;
    let (batcher, batcher_tasks) = Batcher::new(id, cfg, shard_sink, metrics.clone());
    let ctx = Rc::new(ShardCtx {
        id,
        shared: shared.clone(),
        l1,
        batcher,
        metrics,
        senders,
        handled: Rc::new(PendingTable::default()),
        resolved: Rc::new(PendingTable::default()),
        connections: Cell::new(0),
        admin_connections: Cell::new(0),
        admin_door_connections: Cell::new(0),
        bots: (cfg.tracking.bots != crate::config::Bots::Keep).then(crate::track::BotVerdicts::new),
    });
    spawn_receivers(&ctx, &mut receivers);
    spawn_ticker(ctx.clone());
    if let Some(updates) = core_data.updates(id) {
        spawn_update_consumer(ctx.clone(), updates);
    }
    serve_until_stopped(&ctx, listener, admin_listener).await;
    drain(&ctx).await;
    let closed = batcher_tasks.writer.await;
    ctx.metrics.shard_up.set(0);
    match closed {
        Some(Err(source)) => Err(ShardError::Close { shard: id, source }),
        _ => Ok(()),
    }
}

/// Accepts and serves connections on `listener` (and `admin`, when set) until the server stops.
async fn serve_until_stopped(ctx: &Rc<ShardCtx>, listener: OwnedFd, admin: Option<OwnedFd>) {
    let stop = Rc::new(Event::new());
    spawn_shutdown_watch(ctx.shared.clone(), stop.clone());
    let cfg = ctx.shared.cfg();
    let mut http = http1::Builder::new();
    http.timer(ShardTimer)
        .header_read_timeout(Duration::from_millis(cfg.header_read_timeout_ms))
        .max_buf_size(cfg.header_bytes_max.max(8192))
        .keep_alive(true);
    let http = Rc::new(http);
    ctx.shared.set_accepting(true);
    ctx.metrics.shard_up.set(1);
    let admin_loop = admin.map(|fd| {
        let (ctx, http, stop) = (ctx.clone(), http.clone(), stop.clone());
        glommio::spawn_local(async move { listen(&ctx, fd, &http, &stop, Listener::Admin).await })
    });
    let public = Listener::Public {
        admin_elsewhere: admin_loop.is_some(),
    };
    listen(ctx, listener, &http, &stop, public).await;
    if let Some(task) = admin_loop {
        task.await;
    }
    ctx.shared.set_accepting(false);
}

/// Which listener an accept loop serves.
#[derive(Clone, Copy)]
enum Listener {
    Public { admin_elsewhere: bool },
    Admin,
}

/// Accepts on `fd` until the server stops, then stops listening there.
async fn listen(
    ctx: &Rc<ShardCtx>,
    fd: OwnedFd,
    http: &Rc<http1::Builder>,
    stop: &Rc<Event>,
    kind: Listener,
) {
    // SAFETY: the fd is a bound, listening TCP socket that this shard now owns alone.
    let listening_fd = fd.as_raw_fd();
    let listener = unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) };
    accept_loop(ctx, &listener, listening_fd, http, stop, kind).await;
    // Stop listening now. Dropping the listener is not enough: the accept that the loop
    // abandoned still holds the socket inside the ring, and the kernel tears a ring down
    // after the process exits, so the port would go on taking connections (and, with
    // SO_REUSEPORT, a restarted beacon's share of them) for a moment after exit.
    // SAFETY: shutdown on a descriptor this shard owns; failure only means it was not listening.
    unsafe { libc::shutdown(listening_fd, libc::SHUT_RDWR) };
    drop(listener);
}

/// The end of the shutdown sequence: let connections finish (up to `shutdown_grace_ms`), wait
/// until no shard can forward a request here, then seal the batch and close the queue.
async fn drain(ctx: &ShardCtx) {
    let shared = &ctx.shared;
    let grace = Duration::from_millis(shared.cfg().shutdown_grace_ms);
    let deadline = Instant::now() + grace;
    while ctx.connections.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    shared.http_done();
    let deadline = Instant::now() + grace + Duration::from_secs(1);
    while !shared.all_http_done() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    ctx.batcher.close().await;
}

/// A connection waiting in `listening_fd`'s backlog, accepted without blocking (the socket is
/// non-blocking, `bind_all`); `None` when none waits.
///
/// beacon accepts by itself first and leaves only the wait to glommio: glommio's accept
/// (`TcpListener::accept`) wraps every `accept` in three `fcntl` calls (read the flags, set
/// O_NONBLOCK, put them back), and the loop passed through the reactor for each connection:
/// in a connect storm that was 4.7 `io_uring_enter` and 6.9 ring submissions a connection,
/// against 0.8 and 2.0 now (BENCHMARKS.md).
fn accept_now(listening_fd: i32) -> Option<std::io::Result<TcpStream>> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: accept4 on a listening socket this shard owns; null address pointers are allowed.
    let fd = unsafe {
        libc::accept4(
            listening_fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags,
        )
    };
    if fd >= 0 {
        // SAFETY: a connected TCP socket just accepted, owned by nothing else.
        return Some(Ok(unsafe { TcpStream::from_raw_fd(fd) }));
    }
    let e = std::io::Error::last_os_error();
    match e.kind() {
        std::io::ErrorKind::WouldBlock => None,
        _ => Some(Err(e)),
    }
}

async fn accept_loop(
    ctx: &Rc<ShardCtx>,
    listener: &TcpListener,
    listening_fd: i32,
    http: &Rc<http1::Builder>,
    stop: &Rc<Event>,
    kind: Listener,
) {
    // Connections accepted since the loop last passed through the reactor.
    let mut since_pause = 0;
    let accept_failed = LogEvery::new(Duration::from_secs(WARN_EVERY_SECS));
    let refused = LogEvery::new(Duration::from_secs(WARN_EVERY_SECS));
    let out_of_descriptors = LogEvery::new(Duration::from_secs(WARN_EVERY_SECS));
    let mut ceiling = (connection_descriptor_ceiling(), now_ms());
    loop {
        let stopped = stop.listen();
        if ctx.shared.is_stopping() {
            return;
        }
        let accepted = match accept_now(listening_fd) {
            Some(now) => Some(now.map_err(glommio::GlommioError::from)),
            // Nothing waits: glommio waits for the next one (and its reactor runs meanwhile).
            None => {
                since_pause = 0;
                future::or(async { Some(listener.accept().await) }, async {
                    stopped.await;
                    None
                })
                .await
            }
        };
        let stream = match accepted {
            None => return,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                ctx.metrics.accept_errors.inc();
                if let Some(more) = accept_failed.due() {
                    tracing::warn!(shard = ctx.id, error = %e, more, "accept failed");
                }
                glommio::timer::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                continue;
            }
        };
        // Accepting returns at once while connections wait, and glommio polls for I/O only
        // when no task is runnable (or at its 100 ms preemption tick): a loop that accepts
        // without pause stalls every open connection. Waiting for a timer after every
        // `ACCEPTS_PER_PAUSE` accepts, whatever becomes of the connections (a flood of
        // refused ones too), hands control back to the reactor, so reads on open connections
        // complete between batches.
        since_pause += 1;
        if since_pause >= ACCEPTS_PER_PAUSE {
            since_pause = 0;
            glommio::timer::sleep(ACCEPT_PAUSE).await;
        }
        if now_ms().saturating_sub(ceiling.1) >= NOFILE_REREAD_MS {
            ceiling = (connection_descriptor_ceiling(), now_ms());
        }
        if ceiling.0.is_some_and(|c| stream.as_raw_fd() as u64 >= c) {
            // The last descriptors are the sink's: this connection goes at once.
            ctx.metrics.accept_errors.inc();
            if let Some(more) = out_of_descriptors.due() {
                tracing::warn!(
                    shard = ctx.id,
                    reserved = RESERVED_AT_RUN_TIME,
                    more,
                    "out of descriptors: closing new connections to keep the last ones for the \
                     sink (raise `ulimit -n`, or lower connections_per_shard_max)"
                );
            }
            drop(stream);
            continue;
        }
        let door = match kind {
            Listener::Admin => {
                if ctx.admin_door_connections.get() >= ADMIN_CONNECTIONS_PER_SHARD {
                    ctx.metrics.connections_refused.inc();
                    drop(stream);
                    continue;
                }
                Door::Admin
            }
            Listener::Public { admin_elsewhere } => {
                let cap = ctx.shared.cfg().connection_cap();
                // Over the cap, a few connections are still taken for health checks and scrapes.
                if ctx.connections.get() < cap {
                    Door::Public { admin_elsewhere }
                } else {
                    ctx.metrics.connections_refused.inc();
                    if let Some(more) = refused.due() {
                        tracing::warn!(
                            shard = ctx.id,
                            connections_per_shard_max = cap,
                            more,
                            "shard at its connection cap: new connections get health and \
                             metrics only, or are closed"
                        );
                    }
                    if ctx.admin_connections.get() >= ADMIN_CONNECTIONS_PER_SHARD {
                        drop(stream);
                        continue;
                    }
                    Door::OverCap { admin_elsewhere }
                }
            }
        };
        glommio::spawn_local(serve_connection(
            ctx.clone(),
            http.clone(),
            stream,
            stop.clone(),
            door,
        ))
        .detach();
    }
}

/// Counts a connection while it lives: among the shard's connections, or its admin-only ones.
struct ConnGuard<'a>(&'a Cell<usize>, &'a ShardMetrics);

impl<'a> ConnGuard<'a> {
    fn new(count: &'a Cell<usize>, metrics: &'a ShardMetrics) -> Self {
        count.set(count.get() + 1);
        metrics.connections_open.inc();
        ConnGuard(count, metrics)
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
        self.1.connections_open.dec();
    }
}

/// What a client that sent part of a request head and then nothing for
/// `header_read_timeout_ms` is told before the connection closes.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

async fn serve_connection(
    ctx: Rc<ShardCtx>,
    http: Rc<http1::Builder>,
    stream: TcpStream,
    stop: Rc<Event>,
    door: Door,
) {
    let count = match door {
        Door::Public { .. } => &ctx.connections,
        Door::OverCap { .. } => &ctx.admin_connections,
        Door::Admin => &ctx.admin_door_connections,
    };
    let _guard = ConnGuard::new(count, &ctx.metrics);
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let head_started = Rc::new(Cell::new(false));
    let peer_ip: Rc<str> = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
        .into();
    let svc_ctx = ctx.clone();
    let service = hyper::service::service_fn(move |req| {
        crate::http::serve(svc_ctx.clone(), peer_ip.clone(), req, door)
    });
    let io = HyperStream::new(stream, head_started.clone());
    let mut conn = pin!(http.serve_connection(io, service));
    let stopped = stop.listen();
    if ctx.shared.is_stopping() {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
        return;
    }
    let finished = future::or(async { Some(conn.as_mut().await) }, async {
        stopped.await;
        None
    })
    .await;
    match finished {
        None => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        Some(Err(e)) if e.is_parse() => count_refused_head(&ctx.metrics, &e),
        Some(Err(e)) if e.is_timeout() && head_started.get() => {
            // hyper closes without a word; a client mid-head is told why. The connection
            // (and so `fd`) is still open: `conn` owns the stream until this function returns.
            // SAFETY: `fd` is this connection's open socket; send only reads the buffer.
            let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
            let sent = unsafe {
                libc::send(
                    fd,
                    REQUEST_TIMEOUT.as_ptr().cast(),
                    REQUEST_TIMEOUT.len(),
                    flags,
                )
            };
            if sent > 0 {
                ctx.metrics.request(Route::Other, 408);
            }
        }
        Some(_) => {}
    }
}

/// Counts a request head hyper refused before beacon saw it: hyper answers 431 to a head over
/// `header_bytes_max` (414 to an over-long URI) and 400 to bytes that are not HTTP/1.
fn count_refused_head(metrics: &ShardMetrics, e: &hyper::Error) {
    let (status, why) = if !e.is_parse_too_large() {
        (400, BadRequest::Malformed)
    } else if e.to_string().contains("URI") {
        (414, BadRequest::PathTooLong)
    } else {
        (431, BadRequest::HeadTooLarge)
    };
    metrics.request(Route::Other, status);
    metrics.bad(why);
}

fn spawn_shutdown_watch(shared: Arc<Shared>, stop: Rc<Event>) {
    glommio::spawn_local(async move {
        while !shared.is_stopping() {
            glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
        }
        stop.notify(usize::MAX);
    })
    .detach();
}

/// Applies the core data store's pushed changes to this shard's L1, as they come.
fn spawn_update_consumer(ctx: Rc<ShardCtx>, mut updates: UpdateStream) {
    use futures_lite::StreamExt;
    glommio::spawn_local(async move {
        while let Some(update) = updates.next().await {
            match ctx.l1.apply(update) {
                Applied::Applied => ctx.metrics.updates_applied.inc(),
                Applied::Ignored => ctx.metrics.updates_ignored.inc(),
            }
        }
    })
    .detach();
}

/// The shard's 100 ms chores, on one timer: publish its sink's health for `/health/ready` on
/// any shard, renew its wall-clock anchor (`sys::wall_ms`), sample its L1's size, and once a
/// second return freed memory to the system.
fn spawn_ticker(ctx: Rc<ShardCtx>) {
    glommio::spawn_local(async move {
        for tick in 0u64.. {
            ctx.shared.set_sink_healthy(ctx.id, ctx.batcher.healthy());
            ctx.metrics.l1_entries.set(ctx.l1.len() as i64);
            if tick % 10 == 0 {
                // mimalloc (beacon's allocator) purges freed pages only on later allocations
                // by the same thread, so a shard that goes quiet after 10,000 connections
                // closed kept their ~300 MB. Collecting its heap returns them.
                // SAFETY: mi_collect takes no pointers; it works on this thread's heap.
                unsafe { libmimalloc_sys::mi_collect(false) };
            }
            crate::sys::reanchor();
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
    })
    .detach();
}
