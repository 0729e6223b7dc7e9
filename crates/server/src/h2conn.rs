//! An HTTP/2 connection and its streams driven by one task.
//!
//! hyper hands each HTTP/2 stream to an executor. Spawned as tasks of their
//! own, a finished stream wakes the connection's task, which tokio runs next
//! and which writes that one answer: one TLS record and one system call per
//! response (measured: 40,020 `writev` for 40,000 requests of h2load -m32).
//! Here the streams are polled by the connection's own task, all that are
//! ready in one go, and the connection then writes all their frames at once,
//! the way event-loop servers batch them. The streams of one connection then
//! share a thread, as they share a socket.
//!
//! That alone is not enough: h2 writes every DATA frame larger than 256
//! bytes on its own, and TLS makes each write a record and a system call.
//! [`WriteBatch`] gathers the small writes until h2 flushes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream's future, as hyper hands it over.
type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a connection's task shares with hyper's parts: the streams hyper
/// starts (it is the HTTP/2 server's executor) and whether the writes are
/// being gathered. Cloned into the builder and the [`WriteBatch`].
#[derive(Clone, Default)]
pub(crate) struct Shared(Arc<SharedState>);

#[derive(Default)]
struct SharedState {
    started: Mutex<Vec<StreamFuture>>,
    /// Set while [`Driven`] polls: a flush leaves the gathered writes be.
    gathering: AtomicBool,
    /// A flush was put off and its bytes are still gathered.
    put_off: AtomicBool,
}

impl<F> hyper::rt::Executor<F> for Shared
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        // A panicking handler ends its own stream (reset), as it did as a
        // task of its own, not the connection's task with every other stream.
        let fut = std::panic::AssertUnwindSafe(fut).catch_unwind().map(drop);
        self.0.started.lock().unwrap_or_else(|e| e.into_inner()).push(Box::pin(fut));
    }
}

impl Shared {
    /// Moves the streams started since the last call into `into`.
    fn drain_into(&self, into: &mut FuturesUnordered<StreamFuture>) -> bool {
        let mut new = self.0.started.lock().unwrap_or_else(|e| e.into_inner());
        let any = !new.is_empty();
        into.extend(new.drain(..));
        any
    }

    fn gathering(&self) -> bool {
        self.0.gathering.load(Ordering::Relaxed)
    }

    fn set_gathering(&self, on: bool) {
        self.0.gathering.store(on, Ordering::Relaxed);
    }

    fn put_off(&self) -> bool {
        self.0.put_off.load(Ordering::Relaxed)
    }

    fn set_put_off(&self, on: bool) {
        self.0.put_off.store(on, Ordering::Relaxed);
    }
}

/// A connection future with the streams it started, polled together.
pub(crate) struct Driven<C> {
    conn: Pin<Box<C>>,
    shared: Shared,
    streams: FuturesUnordered<StreamFuture>,
}

impl<C> Driven<C> {
    /// Drives `conn`, whose builder and stream were given `shared`.
    pub(crate) fn new(conn: C, shared: Shared) -> Self {
        Driven { conn: Box::pin(conn), shared, streams: FuturesUnordered::new() }
    }

    /// The connection itself (to start its graceful shutdown).
    pub(crate) fn conn(&mut self) -> Pin<&mut C> {
        self.conn.as_mut()
    }
}

impl<C: Future> Future for Driven<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        // Bytes still put off from the last poll mean that turn's flush did
        // not come: this poll writes at every flush.
        this.shared.set_gathering(!this.shared.put_off());
        loop {
            // The connection reads frames (starting streams) and writes
            // what the streams have queued.
            if let Poll::Ready(out) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            let started = this.shared.drain_into(&mut this.streams);
            // Every stream that can go on does, before the connection
            // writes again: their answers leave together.
            let mut finished = false;
            while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {
                finished = true;
            }
            if started || finished {
                continue;
            }
            // Nothing more to do now: what was gathered goes out, by one
            // more turn of the connection, which flushes before it waits.
            if this.shared.put_off() {
                if this.shared.gathering() {
                    this.shared.set_gathering(false);
                    continue;
                }
                // That turn did not flush: the next poll will, not gathering.
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
    }
}

/// Writes this large or larger, with nothing gathered before them, go to
/// the stream as they are (a large file's frames, not copied).
const DIRECT: usize = 8 * 1024;
/// At most this much is gathered before it is written (four TLS records).
const GATHER: usize = 64 * 1024;

/// A stream whose small writes are gathered and written at the next flush,
/// or when they fill [`GATHER`]. The buffer is freed once written, so an
/// idle connection holds none.
pub(crate) struct WriteBatch<S> {
    inner: S,
    shared: Shared,
    buf: Vec<u8>,
    /// How much of `buf` the stream has taken.
    written: usize,
}

impl<S> WriteBatch<S> {
    /// Gathers the writes to `inner` while `shared` says so.
    pub(crate) fn new(inner: S, shared: Shared) -> Self {
        WriteBatch { inner, shared, buf: Vec::new(), written: 0 }
    }
}

impl<S: AsyncWrite + Unpin> WriteBatch<S> {
    /// Writes what is gathered; ready when all of it is.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.buf = Vec::new();
        self.written = 0;
        self.shared.set_put_off(false);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteBatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteBatch<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        loop {
            if this.buf.is_empty() && total >= DIRECT {
                return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
            }
            if this.buf.len() + total <= GATHER {
                if this.buf.capacity() == 0 {
                    this.buf.reserve(GATHER.min(total.max(DIRECT)));
                }
                for b in bufs {
                    this.buf.extend_from_slice(b);
                }
                return Poll::Ready(Ok(total));
            }
            ready!(this.poll_write_out(cx))?;
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // h2 flushes after each large DATA frame; the task's last turn
        // flushes all (see `Driven::poll`).
        if !this.buf.is_empty() && this.shared.gathering() {
            this.shared.set_put_off(true);
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
