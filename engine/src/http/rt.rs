//! hyper 1.x on glommio: the stream adapter (`hyper::rt::Read`/`Write`) and the timer.
//!
//! Reads go through glommio's preallocated receive buffer: the buffer is zeroed once when the
//! connection opens, the kernel `recv`s into it, and the adapter copies the received bytes into
//! hyper's (uninitialised) buffer. Nothing is zeroed per read, and no `unsafe` is needed to hand
//! uninitialised memory to a `&mut [u8]` API.

use std::cell::Cell;
use std::io;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures_lite::{AsyncBufRead, AsyncWrite};
use glommio::net::{Preallocated, TcpStream};

/// Bytes of each connection's receive buffer; a request head larger than this is read in
/// several `recv`s. 4 KiB holds a browser's head with its cookies; it is allocated for every
/// open connection (with 8 KiB an idle connection cost 29.6 KB of RSS, with 4 KiB 25.6 KB).
pub const RECV_BUFFER_BYTES: usize = 4096;

/// A glommio TCP stream that hyper can drive.
pub struct HyperStream {
    inner: TcpStream<Preallocated>,
    /// Set when bytes arrive, cleared when an answer is written: whether a request head is
    /// under way (a header-read timeout then gets a 408, an idle keep-alive close does not).
    head_started: Rc<Cell<bool>>,
}

impl HyperStream {
    pub fn new(stream: TcpStream, head_started: Rc<Cell<bool>>) -> Self {
        HyperStream {
            inner: stream.buffered_with(Preallocated::new(RECV_BUFFER_BYTES)),
            head_started,
        }
    }
}

impl hyper::rt::Read for HyperStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let received = ready!(Pin::new(&mut this.inner).poll_fill_buf(cx))?;
        let n = received.len().min(buf.remaining());
        if n > 0 {
            this.head_started.set(true);
        }
        buf.put_slice(&received[..n]);
        Pin::new(&mut this.inner).consume(n);
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for HyperStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.head_started.set(false);
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// hyper's timer on glommio's per-shard timers, so header-read (and keep-alive idle)
/// timeouts really fire.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardTimer;

impl hyper::rt::Timer for ShardTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(ShardSleep::new(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        // hyper re-arms the header timer for every request on a connection; re-arm the same
        // glommio timer instead of allocating a new one.
        match sleep.as_mut().downcast_mut_pin::<ShardSleep>() {
            Some(mut s) => s.as_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A glommio timer that hyper may treat as `Send + Sync`.
///
/// hyper requires `Sleep: Send + Sync`, while glommio timers belong to the executor that made
/// them. Every connection future, and so every `ShardSleep`, is created, polled and dropped on
/// its shard; this type enforces that instead of assuming it: polling on another thread panics
/// before the timer is touched, and dropping on another thread leaks the timer rather than
/// touch it. `&ShardSleep` exposes nothing, so sharing references is harmless.
pub struct ShardSleep {
    timer: ManuallyDrop<glommio::timer::Timer>,
    home: ThreadId,
}

// SAFETY: see the type's doc comment: the glommio timer is only ever used on `home`.
unsafe impl Send for ShardSleep {}
// SAFETY: no method takes `&self`; a shared reference gives no access to the timer.
unsafe impl Sync for ShardSleep {}

impl ShardSleep {
    fn new(duration: Duration) -> Self {
        ShardSleep {
            timer: ManuallyDrop::new(glommio::timer::Timer::new(duration)),
            home: std::thread::current().id(),
        }
    }

    fn check_home(&self) {
        assert_eq!(
            std::thread::current().id(),
            self.home,
            "a shard timer was used off its shard"
        );
    }

    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        let this = self.get_mut();
        this.check_home();
        this.timer
            .reset(deadline.saturating_duration_since(Instant::now()));
    }
}

impl std::future::Future for ShardSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.check_home();
        Pin::new(&mut *this.timer).poll(cx).map(|_| ())
    }
}

impl hyper::rt::Sleep for ShardSleep {}

impl Drop for ShardSleep {
    fn drop(&mut self) {
        if std::thread::current().id() == self.home {
            // SAFETY: dropped exactly once, here, on the thread that owns the timer.
            unsafe { ManuallyDrop::drop(&mut self.timer) }
        }
    }
}
