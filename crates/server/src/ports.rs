//! The open ports: binding them, and the set of listeners rebuilt from a new
//! configuration without touching the ports that stay. Serving what is bound
//! is the listen module's: bound sockets go there as [`ServeJob`]s, so this
//! module (and the runtime that owns the set) does not depend on how requests
//! are answered. A leaf: it imports nothing of this crate.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::settings::ListenerSpec;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Bound sockets of one listener, to serve until `stop` turns true.
#[derive(Debug)]
pub struct ServeJob {
    /// The port and protocol.
    pub spec: ListenerSpec,
    /// The bound sockets (one per address).
    pub sockets: Vec<TcpListener>,
    /// Turns true when the listener closes.
    pub stop: watch::Receiver<bool>,
}

/// Where [`ListenerSet`] sends the sockets it bound.
pub type ServeJobs = mpsc::UnboundedReceiver<ServeJob>;

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
        io::ErrorKind::AddrNotAvailable => "the device has no such address (see http_ports' and https_addresses' addresses)".into(),
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
    /// The addresses it is bound to (empty: every address).
    addresses: Vec<IpAddr>,
}

/// A listener a configuration wants: its port and protocol, and the
/// addresses it names (empty: the set's own, those of `--listen` or every address).
pub type Wanted = (ListenerSpec, Vec<IpAddr>);

/// The set of open listeners, keyed by port and protocol.
pub struct ListenerSet {
    open: BTreeMap<ListenerSpec, Listener>,
    /// Addresses to bind; empty means every address (IPv6 and IPv4).
    addresses: Arc<Vec<IpAddr>>,
    /// Where bound sockets go to be served.
    serve: mpsc::UnboundedSender<ServeJob>,
    /// Offline (the command line's changes on a data folder no server runs
    /// on): nothing is bound, the server binds at its start.
    offline: bool,
}

impl std::fmt::Debug for ListenerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.open.keys()).finish()
    }
}

/// Listeners bound for a change, not yet serving; dropping it frees the ports.
pub struct Prepared {
    bound: Vec<(ListenerSpec, Vec<IpAddr>, Vec<TcpListener>)>,
    remove: Vec<ListenerSpec>,
}

impl ListenerSet {
    /// An empty set binding `addresses` (empty: every address); the sockets
    /// it binds arrive on the returned receiver, for the listen module to serve.
    pub fn new(addresses: Vec<IpAddr>) -> (Self, ServeJobs) {
        let (serve, jobs) = mpsc::unbounded_channel();
        (Self { open: BTreeMap::new(), addresses: Arc::new(addresses), serve, offline: false }, jobs)
    }

    /// A set that never binds: the runtime of the command line's offline
    /// changes, whose Sets check and store settings for the next start.
    pub fn offline() -> Self {
        let (mut set, _jobs) = Self::new(Vec::new());
        set.offline = true;
        set
    }

    /// The listeners open now.
    pub fn specs(&self) -> Vec<ListenerSpec> {
        self.open.keys().copied().collect()
    }

    /// The addresses a wanted listener binds: its own, else the set's.
    fn effective(&self, addresses: &[IpAddr]) -> Vec<IpAddr> {
        if addresses.is_empty() { self.addresses.to_vec() } else { addresses.to_vec() }
    }

    /// Whether the listener `spec` is open on exactly `addresses` (as given in `wanted`).
    fn is_open(&self, spec: &ListenerSpec, addresses: &[IpAddr]) -> bool {
        self.open.get(spec).is_some_and(|l| l.addresses == self.effective(addresses))
    }

    /// Binds every port `wanted` adds, without serving yet, so a port that
    /// cannot be opened refuses the change before anything else changes.
    pub fn prepare(&self, wanted: &[Wanted]) -> Result<Prepared, BindError> {
        let mut bound = Vec::new();
        if self.offline {
            return Ok(Prepared { bound, remove: Vec::new() });
        }
        for (spec, addresses) in wanted {
            if self.is_open(spec, addresses) {
                continue;
            }
            // The same port moving between HTTP and HTTPS, or to other
            // addresses: it is still bound by the old listener, so it is
            // rebound after that one closes.
            if self.open.keys().any(|o| o.port == spec.port) {
                continue;
            }
            let addresses = self.effective(addresses);
            bound.push((*spec, addresses.clone(), bind(spec.port, spec.tls, &addresses)?));
        }
        let remove = self
            .open
            .iter()
            .filter(|(s, l)| !wanted.iter().any(|(w, a)| w == *s && self.effective(a) == l.addresses))
            .map(|(s, _)| *s)
            .collect();
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
        wanted: &[Wanted],
        keep_old: bool,
    ) -> Result<(), BindError> {
        if self.offline {
            return Ok(());
        }
        for spec in prepared.remove {
            let port_needed = wanted.iter().any(|(w, _)| w.port == spec.port);
            if keep_old && !port_needed {
                continue;
            }
            if let Some(l) = self.open.remove(&spec) {
                let _ = l.stop.send(true);
            }
        }
        for (spec, addresses, listeners) in prepared.bound {
            self.start(spec, addresses, listeners);
        }
        // Ports that changed protocol or addresses are freed once their old
        // accept loop has seen its stop signal and dropped the socket: retry briefly.
        for (spec, addresses) in wanted {
            if !self.is_open(spec, addresses) {
                let addresses = self.effective(addresses);
                let mut attempt = 0;
                let listeners = loop {
                    match bind(spec.port, spec.tls, &addresses) {
                        Ok(l) => break l,
                        Err(e) if attempt >= 100 => return Err(e),
                        Err(_) => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                };
                self.start(*spec, addresses, listeners);
            }
        }
        Ok(())
    }

    fn start(&mut self, spec: ListenerSpec, addresses: Vec<IpAddr>, sockets: Vec<TcpListener>) {
        let (stop, stop_rx) = watch::channel(false);
        // Bound and listening already: connections wait in the backlog until
        // the serving side takes the sockets. Gone only at shutdown.
        let _ = self.serve.send(ServeJob { spec, sockets, stop: stop_rx });
        let shown = if addresses.is_empty() {
            "every address".to_string()
        } else {
            addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")
        };
        tracing::info!(port = spec.port, tls = spec.tls, addresses = %shown, "listening");
        self.open.insert(spec, Listener { stop, addresses });
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
