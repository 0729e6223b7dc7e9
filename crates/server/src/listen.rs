//! Serving the listeners' sockets and the connections they accept: limits on
//! every wait and every size, a bounded number of connections (the idlest go
//! first when full). Which ports are open is [`crate::ports`]'s; its bound
//! sockets arrive here ([`serve_jobs`]) with everything needed to serve them
//! given when the server starts.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use portcullis_core::settings::ListenerSpec;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::conn::coarse_now_ms;
pub use crate::conn::{ConnInfo, ConnectionGate, Limits, OpenGate};
use crate::ports::ServeJobs;

/// Everything an accept loop needs; cheap to clone.
#[derive(Clone)]
pub struct ListenContext {
    /// The application, behind the checks every request goes through.
    pub service: crate::http::FrontService,
    /// The TLS configurations (their resolver swaps certificates).
    pub tls: crate::tls::TlsConfigs,
    /// The limits.
    pub limits: Arc<Limits>,
    /// The connection table.
    pub tracker: Arc<ConnTracker>,
    /// Access control at the connection.
    pub gate: Arc<dyn ConnectionGate>,
    /// Turns true when the whole server shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// The metrics of connections and handshakes.
    pub fleet: Arc<crate::fleet::Fleet>,
}

/// The open connections, so that the limit evicts the idlest and shutdown
/// waits for them.
#[derive(Debug)]
pub struct ConnTracker {
    conns: Mutex<Conns>,
    empty: Notify,
    /// Connections holding buffers and HTTP state now: open ones, less
    /// those waiting idle with their socket alone.
    holding: AtomicUsize,
    /// The most `holding` has been since [`ConnTracker::take_release`] last looked.
    holding_peak: AtomicUsize,
    /// Woken when [`HEAP_TRIM_AFTER`] connections gave their buffers back.
    release_due: Notify,
}

/// Connections giving their buffers back (closing, or going idle) after
/// which the heap's free memory is returned to the kernel: some 1-2 MiB.
pub const HEAP_TRIM_AFTER: usize = 64;

/// The connection table; its ids come from a plain counter under the same
/// lock (no 64-bit atomic: 32-bit MIPS has none, and a 32-bit id could wrap
/// onto a connection still open).
#[derive(Debug, Default)]
struct Conns {
    next_id: u64,
    open: HashMap<u64, Arc<ConnState>>,
    /// The most open at once since [`ConnTracker::take_release`] last looked.
    open_peak: usize,
}

#[derive(Debug)]
struct ConnState {
    /// Milliseconds (coarse monotonic clock, truncated to 32 bits) of the
    /// last byte moved. 32 bits, so that every device has the atomic; ages
    /// are taken with wrapping subtraction, exact up to 49 days, and no
    /// connection stays silent for more than the idle timeout.
    last_activity: AtomicU32,
    /// Whether the last bytes moved were the server's (an answer), not the client's.
    answered: AtomicBool,
    /// Whether the last write found the socket full (bytes still to send).
    write_blocked: AtomicBool,
    kill: Notify,
}

impl ConnState {
    /// Time since the last byte moved.
    fn silent_for(&self, now_ms: u32) -> Duration {
        Duration::from_millis(u64::from(now_ms.wrapping_sub(self.last_activity.load(Ordering::Relaxed))))
    }

    /// Whether everything the server had to say went out and the client
    /// has sent nothing since: no request is half read or half answered.
    fn answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed) && !self.write_blocked.load(Ordering::Relaxed)
    }
}

impl Default for ConnTracker {
    fn default() -> Self {
        Self {
            conns: Mutex::new(Conns::default()),
            empty: Notify::new(),
            holding: AtomicUsize::new(0),
            holding_peak: AtomicUsize::new(0),
            release_due: Notify::new(),
        }
    }
}

/// Returns the heap's free memory to the kernel ([`portcullis_sys::trim_heap`])
/// a second after [`HEAP_TRIM_AFTER`] connections gave their buffers back,
/// so that memory a burst of connections took comes back when they close or
/// go idle. A steady load (connections coming and going a few at a time)
/// never wakes it. Ends where the allocator needs no help (musl).
pub fn spawn_heap_trim(tracker: Arc<ConnTracker>) {
    tokio::spawn(async move {
        loop {
            tracker.release_due.notified().await;
            // Let the burst end first: one walk of the heap for all of it.
            tokio::time::sleep(Duration::from_secs(1)).await;
            if tracker.take_release() < HEAP_TRIM_AFTER {
                continue;
            }
            match tokio::task::spawn_blocking(portcullis_sys::trim_heap).await {
                Ok(Ok(returned)) => tracing::debug!(returned, "free heap memory returned to the kernel"),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Unsupported => return,
                Ok(Err(e)) => tracing::debug!(error = %e, "heap not trimmed"),
                Err(_) => {}
            }
        }
    });
}

/// Counts a connection out of [`ConnTracker`]'s `holding` while it waits idle.
struct Released<'a>(&'a ConnTracker);

impl Drop for Released<'_> {
    fn drop(&mut self) {
        self.0.hold();
    }
}

impl ConnTracker {
    /// The activity clock: coarse milliseconds, wrapping at 32 bits.
    fn now_ms(&self) -> u32 {
        coarse_now_ms() as u32
    }

    fn hold(&self) {
        let now = self.holding.fetch_add(1, Ordering::Relaxed) + 1;
        self.holding_peak.fetch_max(now, Ordering::Relaxed);
    }

    fn release(&self) -> Released<'_> {
        self.unhold();
        Released(self)
    }

    fn unhold(&self) {
        let now = self.holding.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        if self.holding_peak.load(Ordering::Relaxed).saturating_sub(now) >= HEAP_TRIM_AFTER {
            self.release_due.notify_one();
        }
    }

    /// How many connections gave their memory back since the last call:
    /// the larger of the drop from the most that held buffers at once
    /// (closed, or idle with their socket alone) and the drop from the most
    /// that were open at once (idle ones closing too). A large number means
    /// much freed memory that the allocator may keep unless told to return
    /// it; a steady load, connections coming and going a few at a time,
    /// keeps both small.
    pub fn take_release(&self) -> usize {
        let closed = {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            let open = conns.open.len();
            std::mem::replace(&mut conns.open_peak, open).saturating_sub(open)
        };
        let now = self.holding.load(Ordering::Relaxed);
        let idle = self.holding_peak.swap(now, Ordering::Relaxed).saturating_sub(now);
        closed.max(idle)
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.conns.lock().map(|c| c.open.len()).unwrap_or(0)
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn register(self: &Arc<Self>, max: usize) -> ConnGuard {
        let now = self.now_ms();
        let state = Arc::new(ConnState {
            last_activity: AtomicU32::new(now),
            answered: AtomicBool::new(false),
            write_blocked: AtomicBool::new(false),
            kill: Notify::new(),
        });
        self.hold();
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let id = conns.next_id;
        conns.next_id += 1;
        if conns.open.len() >= max {
            // Full: the connection that has been silent longest goes first, so
            // slow or idle clients cannot lock out a working one.
            if let Some((&victim, _)) = conns.open.iter().max_by_key(|(_, s)| s.silent_for(now))
                && let Some(s) = conns.open.remove(&victim)
            {
                s.kill.notify_one();
            }
        }
        conns.open.insert(id, state.clone());
        conns.open_peak = conns.open_peak.max(conns.open.len());
        ConnGuard { tracker: self.clone(), id, state }
    }

    /// Waits until every connection has closed, or `limit` has passed.
    pub async fn wait_empty(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.empty.notified();
            if self.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_empty();
            }
        }
    }
}

struct ConnGuard {
    tracker: Arc<ConnTracker>,
    id: u64,
    state: Arc<ConnState>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut conns = self.tracker.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.open.remove(&self.id);
        self.tracker.unhold();
        if conns.open_peak.saturating_sub(conns.open.len()) >= HEAP_TRIM_AFTER {
            self.tracker.release_due.notify_one();
        }
        if conns.open.is_empty() {
            self.tracker.empty.notify_waiters();
        }
    }
}

/// A stream that notes when bytes last moved, for the idle timeout and eviction.
struct Tracked<S> {
    inner: S,
    tracker: Arc<ConnTracker>,
    state: Arc<ConnState>,
}

impl<S> Tracked<S> {
    fn touch(&self, by_server: bool) {
        self.state.last_activity.store(self.tracker.now_ms(), Ordering::Relaxed);
        self.state.answered.store(by_server, Ordering::Relaxed);
    }

    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.touch(true);
                self.state.write_blocked.store(false, Ordering::Relaxed);
            }
            Poll::Pending => self.state.write_blocked.store(true, Ordering::Relaxed),
            _ => {}
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch(false);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&r);
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves the sockets [`crate::ports::ListenerSet`] binds, until the server shuts down.
pub fn serve_jobs(ctx: ListenContext, mut jobs: ServeJobs) {
    tokio::spawn(async move {
        let mut shutdown = ctx.shutdown.clone();
        loop {
            let job = tokio::select! {
                _ = shutdown.changed() => break,
                job = jobs.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
            };
            for socket in job.sockets {
                tokio::spawn(accept_loop(socket, job.spec, ctx.clone(), job.stop.clone()));
            }
        }
    });
}

async fn accept_loop(
    listener: TcpListener,
    spec: ListenerSpec,
    ctx: ListenContext,
    mut stop: watch::Receiver<bool>,
) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            _ = shutdown.changed() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(port = spec.port, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        if !ctx.gate.admit(peer.ip()) {
            // Refused before TLS and before any password work: a closed socket is all it costs.
            drop(stream);
            continue;
        }
        let guard = ctx.tracker.register(ctx.limits.max_connections);
        // Unknown only if the socket is already gone; unspecified then, which no policy check matches by address.
        let local = stream
            .local_addr()
            .map(|a| a.ip().to_canonical())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let info = ConnInfo { peer, local_port: spec.port, tls: spec.tls, client: peer.ip(), local };
        // Chosen per connection: acme-tls/1 is offered only while a challenge is pending.
        let acceptor = spec.tls.then(|| TlsAcceptor::from(ctx.tls.for_handshake()));
        let task = serve_connection(stream, info, acceptor, ctx.clone(), stop.clone(), guard);
        // What a connection costs before any buffer: its task's state.
        tracing::trace!(bytes = std::mem::size_of_val(&task), "connection task");
        tokio::spawn(task);
    }
}

/// Which HTTP a connection speaks, when it is known before the first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// Found out from the first bytes (plain connections, which may be h2c).
    Auto,
    /// HTTP/1.1: no version sniffing on every read.
    Http1,
    /// HTTP/2 (chosen by ALPN).
    Http2,
}

async fn serve_connection(
    stream: TcpStream,
    info: ConnInfo,
    acceptor: Option<TlsAcceptor>,
    ctx: ListenContext,
    listener_stop: watch::Receiver<bool>,
    guard: ConnGuard,
) {
    let _ = stream.set_nodelay(true);
    let _open = ctx.fleet.connection(info.local_port, info.tls);
    match acceptor {
        // Plain connections may speak HTTP/1 or h2c (prior knowledge): the
        // first bytes decide.
        None => {
            let io = Tracked { inner: stream, tracker: guard.tracker.clone(), state: guard.state.clone() };
            // Boxed: the task then holds only what its own protocol needs
            // (a plain connection does not carry room for a TLS stream).
            Box::pin(drive(io, Proto::Auto, info, &ctx, listener_stop, &guard)).await
        }
        Some(acceptor) => {
            // During the TLS handshake the connection has no HTTP state to close
            // gracefully: it ends at once when the server or its listener stops.
            let (mut shutdown, mut stop) = (ctx.shutdown.clone(), listener_stop.clone());
            let stopping = async move {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            };
            let io = Tracked { inner: stream, tracker: guard.tracker.clone(), state: guard.state.clone() };
            // Boxed, like every stage but the idle wait: a task's state is
            // as large as its largest stage, for as long as it lives, and an
            // idle connection should cost no more than its wait.
            let handshake =
                Box::pin(tokio::time::timeout(ctx.limits.tls_handshake_timeout, acceptor.accept(io)));
            let tls = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(tls)) => {
                        ctx.fleet.handshake(true);
                        tls
                    }
                    Ok(Err(e)) => {
                        ctx.fleet.handshake(false);
                        tracing::debug!(peer = %info.peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        ctx.fleet.handshake(false);
                        return;
                    }
                },
                _ = guard.state.kill.notified() => return,
                _ = stopping => return,
            };
            let proto = match tls.get_ref().1.alpn_protocol() {
                // A validator's connection: the handshake was its answer, and
                // it never carries HTTP (RFC 8737).
                Some(crate::tls::ACME_TLS_ALPN) => {
                    // Boxed with the stream it closes: held in the task
                    // itself, the TLS stream would make every connection's
                    // task that much larger, for its whole life.
                    Box::pin(async move {
                        let mut tls = tls;
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            tokio::io::AsyncWriteExt::shutdown(&mut tls),
                        )
                        .await;
                    })
                    .await;
                    return;
                }
                // Offered by ALPN only in builds with HTTP/2 (crate::tls).
                Some(b"h2") => Proto::Http2,
                Some(_) => Proto::Http1,
                // No ALPN: HTTP/1 or HTTP/2 with prior knowledge.
                None => Proto::Auto,
            };
            Box::pin(drive(tls, proto, info, &ctx, listener_stop, &guard)).await
        }
    }
}

/// A connection's stream that can wait for the client without its buffers:
/// what an idle keep-alive connection is reduced to.
trait Parkable: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether bytes are waiting above the socket (decrypted, not yet read).
    fn buffered(&self) -> bool;
    /// The socket, to wait on its readiness.
    fn socket(&self) -> &TcpStream;
}

impl Parkable for Tracked<TcpStream> {
    fn buffered(&self) -> bool {
        false
    }
    fn socket(&self) -> &TcpStream {
        &self.inner
    }
}

impl Parkable for tokio_rustls::server::TlsStream<Tracked<TcpStream>> {
    fn buffered(&self) -> bool {
        // rustls wants no read only while it holds plaintext (or the peer
        // said close_notify): then hyper must run at once, not wait.
        !self.get_ref().1.wants_read()
    }
    fn socket(&self) -> &TcpStream {
        &self.get_ref().0.inner
    }
}

/// A stream whose first bytes were already read (the protocol sniff, or
/// what hyper had buffered when its state was dropped): they are served
/// first.
struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// HTTP/2's connection preface: a plain connection starting with it speaks
/// h2c with prior knowledge.
#[cfg(feature = "http2")]
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the first bytes, until they differ from HTTP/2's preface or match
/// it whole, within the header timeout: `Some((is_http2, bytes read))`, or
/// `None` when the client closed, failed or took too long. At most 24
/// bytes, on the stack: a connection that sends nothing holds no buffer.
#[cfg(feature = "http2")]
async fn sniff<S: AsyncRead + Unpin>(io: &mut S, limit: Duration) -> Option<(bool, Bytes)> {
    use tokio::io::AsyncReadExt as _;
    let mut first = [0u8; 24];
    let mut n = 0;
    let read = async {
        loop {
            match io.read(&mut first[n..]).await {
                Ok(0) | Err(_) => return None,
                Ok(got) => n += got,
            }
            if first[..n] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == first.len() {
                return Some(true);
            }
        }
    };
    let h2 = tokio::time::timeout(limit, read).await.ok()??;
    Some((h2, Bytes::copy_from_slice(&first[..n])))
}

/// The HTTP/1 settings.
fn http1_builder(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        // Without it, hyper reads the socket once more while each
        // request is handled, to notice a client that hung up: a system
        // call and an 8 KiB buffer per request (the request still holds the
        // old one). Our handlers are short and bounded by timeouts, and a
        // client that shuts down only its sending side still gets its answer.
        .half_close(true)
        .keep_alive(true);
    b
}

/// The HTTP/2 settings.
#[cfg(feature = "http2")]
fn http2_builder(
    limits: &Limits,
    shared: crate::h2conn::Shared,
) -> hyper::server::conn::http2::Builder<crate::h2conn::Shared> {
    let mut b = hyper::server::conn::http2::Builder::new(shared);
    b.timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(64)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// A connection's service: its requests through the front checks, with what
/// is known of the connection (no per-request clone of the router, as a
/// tower-to-hyper adapter would make).
#[derive(Clone)]
struct ConnService {
    app: crate::http::FrontService,
    info: ConnInfo,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ConnService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = crate::http::FrontFuture;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.app.serve(req, self.info)
    }
}

async fn drive<S: Parkable>(
    mut io: S,
    proto: Proto,
    info: ConnInfo,
    ctx: &ListenContext,
    mut listener_stop: watch::Receiver<bool>,
    guard: &ConnGuard,
) {
    let service = ConnService { app: ctx.service.clone(), info };
    #[allow(unused_mut)] // assigned only in builds with HTTP/2
    let mut prefix = Bytes::new();
    // Without HTTP/2 in the build, nothing is negotiated or sniffed but
    // HTTP/1, and a client speaking h2c with prior knowledge gets HTTP/1's 400.
    #[cfg(feature = "http2")]
    {
        let mut proto = proto;
        if proto == Proto::Auto {
            // A client that sends nothing waits here: it must still yield
            // to eviction (the connection limit closes the idlest first) and
            // to the server or its listener stopping.
            let mut shutdown = ctx.shutdown.clone();
            let sniffed = tokio::select! {
                r = sniff(&mut io, ctx.limits.header_read_timeout) => r,
                _ = guard.state.kill.notified() => None,
                _ = listener_stop.wait_for(|s| *s) => None,
                _ = shutdown.wait_for(|s| *s) => None,
            };
            let Some((h2, first)) = sniffed else { return };
            proto = if h2 { Proto::Http2 } else { Proto::Http1 };
            prefix = first;
        }
        if proto == Proto::Http2 {
            let shared = crate::h2conn::Shared::default();
            let io = crate::h2conn::WriteBatch::new(Prefixed { prefix, inner: io }, shared.clone());
            let conn = http2_builder(&ctx.limits, shared.clone()).serve_connection(TokioIo::new(io), service);
            let conn = crate::h2conn::Driven::new(conn, shared);
            return Box::pin(supervise(
                conn,
                |c| c.get_mut().conn().graceful_shutdown(),
                ctx,
                listener_stop,
                guard,
            ))
            .await;
        }
    }
    #[cfg(not(feature = "http2"))]
    let _ = proto;
    // HTTP/1: hyper's state (its read and write buffers, some 16 KiB) lives
    // while requests come; once the connection has been idle for
    // `buffers_released_after`, it is dropped and the connection waits with
    // its socket alone, then gets a new one when the client sends again.
    loop {
        let conn = Box::new(
            http1_builder(&ctx.limits)
                .serve_connection(TokioIo::new(Prefixed { prefix, inner: io }), service.clone()),
        );
        let Some(parts) = Box::pin(supervise_http1(conn, ctx, &mut listener_stop, guard)).await else {
            return;
        };
        // Taken apart at once: a field left in `parts` would live (and hold
        // its allocation) through the wait below.
        let hyper::server::conn::http1::Parts { io: hyper_io, read_buf, .. } = parts;
        let Prefixed { prefix: unread, inner } = hyper_io.into_inner();
        io = inner;
        // Bytes hyper read but had not parsed (a pipelined request's start)
        // go first to the next state, copied: hyper's read buffer, empty or
        // not, holds its whole allocation.
        prefix = {
            // Moved into this block, so both are dropped at its end.
            let (unread, read_buf) = (unread, read_buf);
            if unread.is_empty() && read_buf.is_empty() {
                Bytes::new()
            } else {
                [unread, read_buf].concat().into()
            }
        };
        if !prefix.is_empty() || io.buffered() {
            tracing::trace!(peer = %info.peer, kept = prefix.len(), "idle: HTTP state released, a request begun");
            continue;
        }
        tracing::trace!(peer = %info.peer, "idle: HTTP state and buffers released");
        let request = {
            let _released = guard.tracker.release();
            wait_for_request(&io, ctx, &mut listener_stop, guard).await
        };
        if !request {
            let _ = tokio::time::timeout(CLOSE_LIMIT, io.shutdown()).await;
            return;
        }
        tracing::trace!(peer = %info.peer, "idle connection in use again");
    }
}

/// How long closing an idle connection may take (TLS close_notify, FIN):
/// a client that reads nothing must not hold it longer.
const CLOSE_LIMIT: Duration = Duration::from_secs(1);

/// What hyper's HTTP/1 connection is, for [`supervise_http1`].
type Http1Conn<S> = hyper::server::conn::http1::Connection<TokioIo<Prefixed<S>>, ConnService>;

/// Runs an HTTP/1 connection like [`supervise`]; when it has been idle (no
/// byte either way, its last answer sent) for `buffers_released_after`, ends
/// hyper's state and returns the stream, for [`wait_for_request`]. `None`
/// when the connection is over.
async fn supervise_http1<S: Parkable>(
    mut conn: Box<Http1Conn<S>>,
    ctx: &ListenContext,
    listener_stop: &mut watch::Receiver<bool>,
    guard: &ConnGuard,
) -> Option<hyper::server::conn::http1::Parts<TokioIo<Prefixed<S>>, ConnService>> {
    let mut shutdown = ctx.shutdown.clone();
    let (idle, release) = (ctx.limits.idle_timeout, ctx.limits.buffers_released_after);
    let mut closing: Option<tokio::time::Instant> = None;
    let mut releasing = false;
    loop {
        let silent = guard.state.silent_for(guard.tracker.now_ms());
        let mut wait = idle.saturating_sub(silent);
        if closing.is_none() && !releasing {
            wait = wait.min(release.saturating_sub(silent));
        }
        let check = tokio::time::sleep(wait.max(Duration::from_millis(100)));
        let grace_over = async {
            match closing {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // The connection first: most wake-ups are its own.
            biased;
            // Until the buffers are to go, hyper ends the connection itself
            // (flushing what it holds, then shutting the stream down); after,
            // it stops without shutting down, so the stream can be kept.
            r = std::future::poll_fn(|cx| {
                if releasing { conn.poll_without_shutdown(cx) } else { Pin::new(&mut *conn).poll(cx) }
            }) => {
                if !releasing {
                    return None;
                }
                if r.is_ok() && closing.is_none() && !guard.state.write_blocked.load(Ordering::Relaxed) {
                    return Some(conn.into_parts());
                }
                // Over after all, or with bytes still to send: let hyper
                // flush and shut down, as it would have (bounded).
                let _ = tokio::time::timeout(CLOSE_LIMIT, std::future::poll_fn(|cx| Pin::new(&mut *conn).poll(cx))).await;
                return None;
            }
            _ = guard.state.kill.notified() => return None,
            _ = grace_over => return None,
            _ = check => {
                let silent = guard.state.silent_for(guard.tracker.now_ms());
                if silent >= idle {
                    if closing.is_some() { return None; }
                    Pin::new(&mut *conn).graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + ctx.limits.shutdown_grace);
                } else if silent >= release && closing.is_none() && !releasing && guard.state.answered() {
                    // Idle with its answer sent: hyper closes its state at
                    // once (keep-alive off, nothing in progress) and hands
                    // the stream back; the client sees nothing of it.
                    releasing = true;
                    Pin::new(&mut *conn).graceful_shutdown();
                }
            }
            r = listener_stop.changed(), if closing.is_none() => {
                let _ = r;
                Pin::new(&mut *conn).graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + ctx.limits.shutdown_grace);
            }
            r = shutdown.changed(), if closing.is_none() => {
                let _ = r;
                Pin::new(&mut *conn).graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + ctx.limits.shutdown_grace);
            }
        }
    }
}

/// Waits, holding nothing but the stream, until the client sends again
/// (`true`), or the connection must end: idle timeout, eviction, its
/// listener or the server stopping (`false`; no request is in progress, so
/// nothing is cut short).
async fn wait_for_request<S: Parkable>(
    io: &S,
    ctx: &ListenContext,
    listener_stop: &mut watch::Receiver<bool>,
    guard: &ConnGuard,
) -> bool {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let silent = guard.state.silent_for(guard.tracker.now_ms());
        if silent >= ctx.limits.idle_timeout {
            return false;
        }
        tokio::select! {
            r = io.socket().readable() => return r.is_ok(),
            _ = tokio::time::sleep(ctx.limits.idle_timeout - silent) => {}
            _ = guard.state.kill.notified() => return false,
            _ = listener_stop.wait_for(|s| *s) => return false,
            _ = shutdown.wait_for(|s| *s) => return false,
        }
    }
}

/// Runs a connection until it ends, closing it gracefully when it has been
/// idle too long, its listener closes or the server shuts down (each with a
/// bounded grace), or at once when it is evicted.
#[cfg(feature = "http2")]
async fn supervise<C: Future>(
    conn: C,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    ctx: &ListenContext,
    mut listener_stop: watch::Receiver<bool>,
    guard: &ConnGuard,
) {
    tokio::pin!(conn);
    let mut shutdown = ctx.shutdown.clone();
    let idle = ctx.limits.idle_timeout;
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let silent = guard.state.silent_for(guard.tracker.now_ms());
        let idle_check = tokio::time::sleep(idle.saturating_sub(silent).max(Duration::from_millis(100)));
        let grace_over = async {
            match closing {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // The connection first: most wake-ups are its own.
            biased;
            _ = conn.as_mut() => return,
            _ = guard.state.kill.notified() => return,
            _ = grace_over => return,
            _ = idle_check => {
                if guard.state.silent_for(guard.tracker.now_ms()) >= idle {
                    if closing.is_some() { return; }
                    graceful_shutdown(conn.as_mut());
                    closing = Some(tokio::time::Instant::now() + ctx.limits.shutdown_grace);
                }
            }
            r = listener_stop.changed(), if closing.is_none() => {
                let _ = r;
                graceful_shutdown(conn.as_mut());
                closing = Some(tokio::time::Instant::now() + ctx.limits.shutdown_grace);
            }
            r = shutdown.changed(), if closing.is_none() => {
                let _ = r;
                graceful_shutdown(conn.as_mut());
                closing = Some(tokio::time::Instant::now() + ctx.limits.shutdown_grace);
            }
        }
    }
}
