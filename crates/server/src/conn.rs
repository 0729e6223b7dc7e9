//! What the connection layer and the request layer share: the limits, what a
//! request knows of its connection, the connection gate and the coarse clock.
//! A leaf: it imports nothing of this crate.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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
    /// Time an HTTP/1 keep-alive connection stays idle (its answer sent,
    /// nothing since) before it gives back its buffers and HTTP state and
    /// waits with its socket alone; the next request gets new ones.
    pub buffers_released_after: Duration,
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
            // Long enough that a client's next request on a busy connection
            // finds them still there (rebuilding them costs a few
            // allocations); short against a thousand idle ones.
            buffers_released_after: Duration::from_secs(1),
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
    /// The local address the client connected to (IPv4-mapped IPv6 turned
    /// back into IPv4), for the policy and guard of per-address listeners.
    pub local: IpAddr,
    /// The client: the peer, or what a trusted proxy says in
    /// `X-Forwarded-For` (set per request by the front layer).
    pub client: IpAddr,
}

impl ConnInfo {
    /// The listener the connection came through, as the settings' rules take it.
    pub fn via(&self) -> portcullis_core::settings::Via {
        portcullis_core::settings::Via {
            spec: portcullis_core::settings::ListenerSpec { port: self.local_port, tls: self.tls },
            local: self.local,
        }
    }
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

/// Milliseconds on the coarse monotonic clock, for what is read on every
/// request or socket operation (connection activity, cache ages): a few
/// milliseconds of resolution are plenty there, and a precise clock read is a
/// measurable cost.
pub(crate) fn coarse_now_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}
