//! hyper 1.x on glommio: the stream adapter (`hyper::rt::Read`/`Write`) and the timer.
//!
//! Reads go through one receive buffer per shard, shared by all its connections: the kernel
//! `recv`s into it and the adapter copies the bytes into hyper's (uninitialised) buffer at once.
//! glommio's unbuffered read either receives right away or only arms a readiness poll, so no
//! read holds the buffer across an await. It is zeroed once per shard: nothing is zeroed per
//! read, no `unsafe` hands uninitialised memory to a `&mut [u8]` API, and an idle connection
//! holds no receive buffer (each used to hold 4 KiB of its own).

use std::cell::{Cell, RefCell};
use std::io;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// Bytes of the shard's receive buffer: at most this much is read per `recv`. 4 KiB holds a
/// browser's head with its cookies.
pub const RECV_BUFFER_BYTES: usize = 4096;

thread_local! {
    /// The receive buffer of the shard running on this thread.
    static RECV_BUFFER: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; RECV_BUFFER_BYTES].into_boxed_slice());
}

/// A glommio TCP stream that hyper can drive.
pub struct HyperStream {
    inner: TcpStream,
    /// Set when bytes arrive, cleared when an answer is written: whether a request head is
    /// under way (a header-read timeout then gets a 408, an idle keep-alive close does not).
    head_started: Rc<Cell<bool>>,
}

impl HyperStream {
    pub fn new(stream: TcpStream, head_started: Rc<Cell<bool>>) -> Self {
        HyperStream {
            inner: stream,
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
        RECV_BUFFER.with_borrow_mut(|recv| {
            let room = buf.remaining().min(recv.len());
            let n = ready!(Pin::new(&mut this.inner).poll_read(cx, &mut recv[..room]))?;
            if n > 0 {
                this.head_started.set(true);
            }
            buf.put_slice(&recv[..n]);
            Poll::Ready(Ok(()))
        })
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
