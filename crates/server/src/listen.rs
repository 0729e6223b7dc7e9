//! Listeners, one per port, and the connections they accept: limits on every
//! wait and every size, a bounded number of connections (the idlest go first
//! when full), and a set of listeners that is rebuilt from a new
//! configuration without touching the ports that stay.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

#[cfg(feature = "http2")]
use hyper_util::rt::TokioExecutor;
use hyper_util::rt::{TokioIo, TokioTimer};
#[cfg(feature = "http2")]
use hyper_util::server::conn::auto;
use portcullis_core::settings::ListenerSpec;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

/// Limits on every request size and every wait (SPEC: security by default).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; when full, the idlest connection is closed for a new one.
    pub max_connections: usize,
    /// Time a client gets to send a request's complete header (slowloris defence).
    pub header_read_timeout: Duration,
    /// Time a connection may stay without any traffic before it is closed.
    pub idle_timeout: Duration,
    /// Time a client gets to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Largest request header block, in bytes (larger: 431).
    pub max_header_bytes: usize,
    /// Largest JSON request body, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Largest upload (certificate files) request body, in bytes.
    pub max_upload_bytes: usize,
    /// Time open requests get to finish at shutdown or when their listener closes.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            max_upload_bytes: 3 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What a request knows about the connection it came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The peer's address (IPv4-mapped IPv6 turned back into IPv4).
    pub peer: SocketAddr,
    /// The local port the connection came in on.
    pub local_port: u16,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client: the peer, or what a trusted proxy says in
    /// `X-Forwarded-For` (set per request by the front layer).
    pub client: IpAddr,
}

/// Decides, before TLS and before any password work, whether a peer may connect.
pub trait ConnectionGate: Send + Sync + 'static {
    /// `true` to serve `peer`, `false` to close its socket at once.
    fn admit(&self, peer: IpAddr) -> bool;
}

/// A gate that admits everyone.
#[derive(Debug, Default)]
pub struct OpenGate;

impl ConnectionGate for OpenGate {
    fn admit(&self, _peer: IpAddr) -> bool {
        true
    }
}

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
    /// Addresses to bind; empty means every address (IPv6 and IPv4).
    pub bind_addresses: Arc<Vec<IpAddr>>,
}

/// The open connections, so that the limit evicts the idlest and shutdown
/// waits for them.
#[derive(Debug)]
pub struct ConnTracker {
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    empty: Notify,
}

#[derive(Debug)]
struct ConnState {
    /// Milliseconds (coarse monotonic clock) of the last byte moved.
    last_activity: AtomicU64,
    kill: Notify,
}

impl Default for ConnTracker {
    fn default() -> Self {
        Self { next_id: AtomicU64::new(0), conns: Mutex::new(HashMap::new()), empty: Notify::new() }
    }
}

/// Milliseconds on the coarse monotonic clock, for what is read on every
/// request or socket operation (connection activity, cache ages): a few
/// milliseconds of resolution are plenty there, and a precise clock read is a
/// measurable cost.
pub(crate) fn coarse_now_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

impl ConnTracker {
    fn now_ms(&self) -> u64 {
        coarse_now_ms()
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn register(self: &Arc<Self>, max: usize) -> ConnGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState { last_activity: AtomicU64::new(self.now_ms()), kill: Notify::new() });
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= max {
            // Full: the connection that has been silent longest goes first, so
            // slow or idle clients cannot lock out a working one.
            if let Some((&victim, _)) =
                conns.iter().min_by_key(|(_, s)| s.last_activity.load(Ordering::Relaxed))
                && let Some(s) = conns.remove(&victim)
            {
                s.kill.notify_one();
            }
        }
        conns.insert(id, state.clone());
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
        conns.remove(&self.id);
        if conns.is_empty() {
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
    fn touch(&self) {
        self.state.last_activity.store(self.tracker.now_ms(), Ordering::Relaxed);
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
            self.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
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

/// Why a port could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("port {port} cannot be opened: {}", explain(.source))]
pub struct BindError {
    /// The port.
    pub port: u16,
    /// Whether it was to serve HTTPS.
    pub tls: bool,
    /// The system's reason.
    pub source: io::Error,
}

fn explain(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "another program on this device already uses it".into(),
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need root or the CAP_NET_BIND_SERVICE capability, which this server does not have".into()
        }
        _ => e.to_string(),
    }
}

/// Binds `port` on every address (one dual-stack IPv6 socket, or IPv4 when
/// the host has no IPv6), or on the given addresses.
pub fn bind(port: u16, tls: bool, addresses: &[IpAddr]) -> Result<Vec<TcpListener>, BindError> {
    let err = |source| BindError { port, tls, source };
    if addresses.is_empty() {
        return match bind_one(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port), true) {
            Ok(l) => Ok(vec![l]),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse || e.kind() == io::ErrorKind::PermissionDenied => {
                Err(err(e))
            }
            Err(_) => Ok(vec![
                bind_one(SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port), false)
                    .map_err(err)?,
            ]),
        };
    }
    addresses.iter().map(|a| bind_one(SocketAddr::new(*a, port), false).map_err(err)).collect()
}

fn bind_one(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(!dual_stack)?;
    }
    // Rebinding a port we just closed (reboot) must not wait for TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// One open port: its accept loops stop when dropped or told to.
struct Listener {
    stop: watch::Sender<bool>,
}

/// The set of open listeners, keyed by port and protocol.
#[derive(Default)]
pub struct ListenerSet {
    open: BTreeMap<ListenerSpec, Listener>,
}

impl std::fmt::Debug for ListenerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.open.keys()).finish()
    }
}

/// Listeners bound for a change, not yet serving; dropping it frees the ports.
pub struct Prepared {
    bound: Vec<(ListenerSpec, Vec<TcpListener>)>,
    remove: Vec<ListenerSpec>,
}

impl ListenerSet {
    /// The listeners open now.
    pub fn specs(&self) -> Vec<ListenerSpec> {
        self.open.keys().copied().collect()
    }

    /// Binds every port `wanted` adds, without serving yet, so a port that
    /// cannot be opened refuses the change before anything else changes.
    pub fn prepare(&self, wanted: &[ListenerSpec], addresses: &[IpAddr]) -> Result<Prepared, BindError> {
        let mut bound = Vec::new();
        for spec in wanted {
            if self.open.contains_key(spec) {
                continue;
            }
            // The same port moving between HTTP and HTTPS: it is still bound
            // by the old listener, so it is rebound after that one closes.
            if self.open.keys().any(|o| o.port == spec.port) {
                continue;
            }
            bound.push((*spec, bind(spec.port, spec.tls, addresses)?));
        }
        let remove = self.open.keys().filter(|s| !wanted.contains(s)).copied().collect();
        Ok(Prepared { bound, remove })
    }

    /// Serves the prepared listeners and closes the removed ones; open
    /// connections on a removed port finish their requests (bounded grace).
    ///
    /// With `keep_old`, listeners the change removes stay open beside the new
    /// ones (a provisional change), unless their port is needed for the other
    /// protocol; [`ListenerSet::close_unwanted`] closes them later.
    pub async fn commit(
        &mut self,
        prepared: Prepared,
        ctx: &ListenContext,
        wanted: &[ListenerSpec],
        keep_old: bool,
    ) -> Result<(), BindError> {
        for spec in prepared.remove {
            let port_needed = wanted.iter().any(|w| w.port == spec.port);
            if keep_old && !port_needed {
                continue;
            }
            if let Some(l) = self.open.remove(&spec) {
                let _ = l.stop.send(true);
            }
        }
        for (spec, listeners) in prepared.bound {
            self.start(spec, listeners, ctx);
        }
        // Ports that changed protocol are freed once their old accept loop
        // has seen its stop signal and dropped the socket: retry briefly.
        for spec in wanted {
            if !self.open.contains_key(spec) {
                let mut attempt = 0;
                let listeners = loop {
                    match bind(spec.port, spec.tls, &ctx.bind_addresses) {
                        Ok(l) => break l,
                        Err(e) if attempt >= 100 => return Err(e),
                        Err(_) => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                };
                self.start(*spec, listeners, ctx);
            }
        }
        Ok(())
    }

    fn start(&mut self, spec: ListenerSpec, listeners: Vec<TcpListener>, ctx: &ListenContext) {
        let (stop, stop_rx) = watch::channel(false);
        for listener in listeners {
            tokio::spawn(accept_loop(listener, spec, ctx.clone(), stop_rx.clone()));
        }
        tracing::info!(port = spec.port, tls = spec.tls, "listening");
        self.open.insert(spec, Listener { stop });
    }

    /// Closes the listeners that are not in `wanted` (their open requests finish).
    pub fn close_unwanted(&mut self, wanted: &[ListenerSpec]) {
        let unwanted: Vec<ListenerSpec> = self.open.keys().filter(|s| !wanted.contains(s)).copied().collect();
        for spec in unwanted {
            if let Some(l) = self.open.remove(&spec) {
                let _ = l.stop.send(true);
            }
        }
    }

    /// Closes every listener.
    pub fn close_all(&mut self) {
        for (_, l) in std::mem::take(&mut self.open) {
            let _ = l.stop.send(true);
        }
    }
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
        let info = ConnInfo { peer, local_port: spec.port, tls: spec.tls, client: peer.ip() };
        // Chosen per connection: acme-tls/1 is offered only while a challenge is pending.
        let acceptor = spec.tls.then(|| TlsAcceptor::from(ctx.tls.for_handshake()));
        tokio::spawn(serve_connection(stream, info, acceptor, ctx.clone(), stop.clone(), guard));
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
    match acceptor {
        // Plain connections may speak HTTP/1 or h2c (prior knowledge): the
        // first bytes decide. (Peeking at them to skip the version-sniffing
        // wrapper for HTTP/1 measured no difference.)
        None => {
            let io = Tracked { inner: stream, tracker: guard.tracker.clone(), state: guard.state.clone() };
            drive(io, Proto::Auto, info, &ctx, listener_stop, &guard).await
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
            let handshake = tokio::time::timeout(ctx.limits.tls_handshake_timeout, acceptor.accept(io));
            let tls = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %info.peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
                _ = guard.state.kill.notified() => return,
                _ = stopping => return,
            };
            let proto = match tls.get_ref().1.alpn_protocol() {
                // A validator's connection: the handshake was its answer, and
                // it never carries HTTP (RFC 8737).
                Some(crate::tls::ACME_TLS_ALPN) => {
                    let mut tls = tls;
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::io::AsyncWriteExt::shutdown(&mut tls),
                    )
                    .await;
                    return;
                }
                // Offered by ALPN only in builds with HTTP/2 (crate::tls).
                Some(b"h2") => Proto::Http2,
                Some(_) => Proto::Http1,
                // No ALPN: HTTP/1 or HTTP/2 with prior knowledge.
                None => Proto::Auto,
            };
            drive(tls, proto, info, &ctx, listener_stop, &guard).await
        }
    }
}

/// The HTTP/1 settings, on hyper's builder or the version-sniffing one's
/// (two types with the same methods).
macro_rules! http1_settings {
    ($b:expr, $limits:expr) => {
        $b.timer(TokioTimer::new())
            .header_read_timeout($limits.header_read_timeout)
            .max_buf_size($limits.max_header_bytes.max(8192))
            // Without it, hyper reads the socket once more while each
            // request is handled, to notice a client that hung up: a system
            // call and an 8 KiB buffer per request (the request still holds
            // the old one). Our handlers are short and bounded by timeouts,
            // and a client that shuts down only its sending side still gets
            // its answer.
            .half_close(true)
            .keep_alive(true)
    };
}

/// The HTTP/2 settings, on hyper's builder or the version-sniffing one's.
#[cfg(feature = "http2")]
macro_rules! http2_settings {
    ($b:expr, $limits:expr) => {
        $b.timer(TokioTimer::new())
            .max_header_list_size($limits.max_header_bytes as u32)
            .max_concurrent_streams(64)
            .keep_alive_interval(Some(Duration::from_secs(30)))
    };
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

async fn drive<S>(
    io: S,
    proto: Proto,
    info: ConnInfo,
    ctx: &ListenContext,
    listener_stop: watch::Receiver<bool>,
    guard: &ConnGuard,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = ConnService { app: ctx.service.clone(), info };
    let io = TokioIo::new(io);
    let limits = &ctx.limits;
    match proto {
        Proto::Http1 => {
            let mut b = hyper::server::conn::http1::Builder::new();
            http1_settings!(b, limits);
            supervise(
                b.serve_connection(io, service).with_upgrades(),
                |c| c.graceful_shutdown(),
                ctx,
                listener_stop,
                guard,
            )
            .await
        }
        // Without HTTP/2 in the build, nothing can be sniffed or negotiated
        // but HTTP/1 (a client speaking h2c gets HTTP/1's 400).
        #[cfg(not(feature = "http2"))]
        Proto::Http2 | Proto::Auto => {
            let mut b = hyper::server::conn::http1::Builder::new();
            http1_settings!(b, limits);
            supervise(
                b.serve_connection(io, service).with_upgrades(),
                |c| c.graceful_shutdown(),
                ctx,
                listener_stop,
                guard,
            )
            .await
        }
        #[cfg(feature = "http2")]
        Proto::Http2 => {
            let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            http2_settings!(b, limits);
            supervise(b.serve_connection(io, service), |c| c.graceful_shutdown(), ctx, listener_stop, guard)
                .await
        }
        #[cfg(feature = "http2")]
        Proto::Auto => {
            let mut b = auto::Builder::new(TokioExecutor::new());
            http1_settings!(b.http1(), limits);
            http2_settings!(b.http2(), limits);
            supervise(
                b.serve_connection_with_upgrades(io, service),
                |c| c.graceful_shutdown(),
                ctx,
                listener_stop,
                guard,
            )
            .await
        }
    }
}

/// Runs a connection until it ends, closing it gracefully when it has been
/// idle too long, its listener closes or the server shuts down (each with a
/// bounded grace), or at once when it is evicted.
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
        let last = guard.state.last_activity.load(Ordering::Relaxed);
        let silent = Duration::from_millis(guard.tracker.now_ms().saturating_sub(last));
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
                let last = guard.state.last_activity.load(Ordering::Relaxed);
                if guard.tracker.now_ms().saturating_sub(last) >= idle.as_millis() as u64 {
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
