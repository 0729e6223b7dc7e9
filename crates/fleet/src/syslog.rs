//! Syslog export: one bounded queue and one task per collector (see
//! `portcullis_core::syslog` for the rules: the message, the framing, the
//! queue's policy and the retry delays).
//!
//! [`SyslogExporter::send`] never waits: it writes the message for each
//! collector and puts it in that collector's queue, dropping the oldest
//! when the queue is full. Each collector's task connects, sends the
//! queue's oldest message, and on a failure closes the connection and waits
//! the retry delay (measured on the injected clock, jittered from the
//! injected random source) before connecting again. The message on its way
//! is taken out of the queue (a full queue cannot drop it meanwhile) and put
//! back in front if sending fails, so a collector that is down and comes
//! back receives what was queued meanwhile (up to the queue's bound).
//!
//! Before writing to a stream, the task checks whether the collector has
//! closed it (a read that returns end-of-stream): a collector that was
//! restarted is noticed before a message is written into a dead connection,
//! where TCP would accept and lose it.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use portcullis_core::Clock;
use portcullis_core::events::Event;
use portcullis_core::syslog::{
    Origin, Retry, SendQueue, SyslogDestination, SyslogRecord, SyslogSettings, SyslogTransport,
    format_message, frame_octet_counted,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::tls::{Trust, client_config, roots};
use crate::{Jitter, SetupError};

/// Longest wait for a connection (TCP and the TLS handshake) or a write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What the exporter reports, for metrics and the event log.
pub trait SyslogObserver: Send + Sync {
    /// A message went out to `destination`.
    fn sent(&self, destination: &str);
    /// `count` messages for `destination` were dropped from its full queue
    /// (reported once messages flow again, or when the exporter stops).
    fn dropped(&self, destination: &str, count: u64);
    /// The connection to `destination` failed (`error` names why, never a secret).
    fn failed(&self, destination: &str, error: &str);
}

/// An observer that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl SyslogObserver for NoObserver {
    fn sent(&self, _: &str) {}
    fn dropped(&self, _: &str, _: u64) {}
    fn failed(&self, _: &str, _: &str) {}
}

/// One collector's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationStats {
    /// `transport://host:port`.
    pub destination: String,
    /// Messages written since the exporter started.
    pub sent: u64,
    /// Messages dropped from the full queue since the exporter started.
    pub dropped: u64,
    /// Messages waiting (the one on its way included).
    pub queued: usize,
    /// Whether a connection is open now (UDP: a socket is ready).
    pub connected: bool,
}

struct Destination {
    settings: SyslogDestination,
    label: String,
    tls: Option<(TlsConnector, rustls_pki_types::ServerName<'static>)>,
    queue: Mutex<SendQueue<String>>,
    wake: Notify,
    sent: AtomicU64,
    connected: AtomicBool,
    /// A message is taken out of the queue and on its way.
    in_flight: AtomicBool,
}

impl Destination {
    fn queue(&self) -> std::sync::MutexGuard<'_, SendQueue<String>> {
        // A panic while holding the lock cannot leave the queue half-changed
        // (each method is one VecDeque operation): keep using it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Shared {
    origin: Origin,
    include_logfile: bool,
    sequence: AtomicU64,
    destinations: Vec<Arc<Destination>>,
}

/// The running export to the collectors of one [`SyslogSettings`].
pub struct SyslogExporter {
    shared: Arc<Shared>,
    observer: Arc<dyn SyslogObserver>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SyslogExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogExporter").field("destinations", &self.shared.destinations.len()).finish()
    }
}

impl SyslogExporter {
    /// Starts one task per destination of `settings` (validated by the core
    /// first) on the current tokio runtime. `hostname` is the device's name
    /// when the settings give none. A TLS destination whose CA, pin or
    /// client certificate cannot be used is refused here, naming its field.
    pub fn start(
        settings: &SyslogSettings,
        hostname: &str,
        clock: Arc<dyn Clock>,
        jitter: Arc<dyn Jitter>,
        observer: Arc<dyn SyslogObserver>,
    ) -> Result<Self, SetupError> {
        let mut destinations = Vec::new();
        for (i, d) in settings.destinations.iter().enumerate() {
            let field = |name: &str| format!("destinations[{i}].{name}");
            let tls = if d.transport == SyslogTransport::Tls {
                let trust = match d.pin() {
                    Some(pin) => Trust::Pinned(pin),
                    None => Trust::Roots(
                        roots(d.ca_pem.as_deref()).map_err(|m| SetupError::new(field("ca_pem"), m))?,
                    ),
                };
                let client = match (&d.client_certificate_pem, &d.client_key_pem) {
                    (Some(c), Some(k)) => Some((c.as_str(), k.expose())),
                    _ => None,
                };
                let config = client_config(trust, client).map_err(|(f, m)| SetupError::new(field(f), m))?;
                let name = d.tls_name().unwrap_or_default();
                let name = rustls_pki_types::ServerName::try_from(name)
                    .map_err(|_| SetupError::new(field("server_name"), "not a DNS name or IP address"))?;
                Some((TlsConnector::from(config), name))
            } else {
                None
            };
            let capacity = usize::try_from(settings.queue_capacity).unwrap_or(usize::MAX);
            destinations.push(Arc::new(Destination {
                label: d.to_string(),
                settings: d.clone(),
                tls,
                queue: Mutex::new(SendQueue::new(capacity)),
                wake: Notify::new(),
                sent: AtomicU64::new(0),
                connected: AtomicBool::new(false),
                in_flight: AtomicBool::new(false),
            }));
        }
        let origin = Origin {
            facility: settings.facility,
            hostname: settings.hostname.clone().unwrap_or_else(|| hostname.to_string()),
            procid: std::process::id().to_string(),
        };
        let shared = Arc::new(Shared {
            origin,
            include_logfile: settings.include_logfile,
            sequence: AtomicU64::new(0),
            destinations,
        });
        let tasks = shared
            .destinations
            .iter()
            .map(|d| tokio::spawn(run(d.clone(), clock.clone(), jitter.clone(), observer.clone())))
            .collect();
        Ok(Self { shared, observer, tasks })
    }

    /// Queues `record` for every collector; never waits.
    pub fn send(&self, record: &SyslogRecord) {
        let sequence = self.shared.sequence.fetch_add(1, Ordering::Relaxed);
        for d in &self.shared.destinations {
            let message =
                format_message(&self.shared.origin, record, sequence, d.settings.transport.max_message());
            d.queue().push(message);
            d.wake.notify_one();
        }
    }

    /// Queues an event of the event log.
    pub fn send_event(&self, event: &Event) {
        self.send(&SyslogRecord::of_event(event));
    }

    /// Whether the settings ask for the logfile's entries too.
    pub fn includes_logfile(&self) -> bool {
        self.shared.include_logfile
    }

    /// Each collector's figures.
    pub fn stats(&self) -> Vec<DestinationStats> {
        self.shared
            .destinations
            .iter()
            .map(|d| {
                let q = d.queue();
                DestinationStats {
                    destination: d.label.clone(),
                    sent: d.sent.load(Ordering::Relaxed),
                    dropped: q.dropped(),
                    queued: q.len() + usize::from(d.in_flight.load(Ordering::Relaxed)),
                    connected: d.connected.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Waits (at most `limit`) until every queue is empty; whether it is.
    pub async fn flush(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self
                .shared
                .destinations
                .iter()
                .all(|d| d.queue().is_empty() && !d.in_flight.load(Ordering::Relaxed))
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the tasks; drops not yet reported are reported now.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        for d in &self.shared.destinations {
            if let Some(r) = d.queue().take_drop_report() {
                self.observer.dropped(&d.label, r.count);
            }
        }
    }
}

impl Drop for SyslogExporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

async fn connect(d: &Destination) -> io::Result<Connection> {
    let hp = d.settings.host_port().map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
    let addr = tokio::time::timeout(IO_TIMEOUT, tokio::net::lookup_host((hp.host.as_str(), hp.port)))
        .await
        .map_err(|_| timed_out())??
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} has no address", hp.host)))?;
    match d.settings.transport {
        SyslogTransport::Udp => {
            let local = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let socket = UdpSocket::bind(local).await?;
            socket.connect(addr).await?;
            Ok(Connection::Udp(socket))
        }
        SyslogTransport::Tcp | SyslogTransport::Tls => {
            let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| timed_out())??;
            tcp.set_nodelay(true)?;
            match &d.tls {
                None => Ok(Connection::Tcp(tcp)),
                Some((connector, name)) => {
                    let tls = tokio::time::timeout(IO_TIMEOUT, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| timed_out())??;
                    Ok(Connection::Tls(Box::new(tls)))
                }
            }
        }
    }
}

impl Connection {
    /// Whether the collector closed the stream (it never sends anything
    /// else). The socket is asked directly (a non-blocking peek), not
    /// tokio's readiness, which may not have seen the close yet.
    async fn closed_by_peer(&mut self) -> bool {
        let tcp = match self {
            Self::Udp(_) => return false,
            Self::Tcp(s) => &*s,
            Self::Tls(s) => s.get_ref().0,
        };
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(tcp).peek(&mut buf) {
            Ok(0) => true,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            // Bytes from the collector: over TLS, a session ticket or a
            // close_notify; reading tells which (it returns at once).
            Ok(_) => match self {
                Self::Tls(s) => {
                    let mut buf = [0u8; 256];
                    tokio::select! {
                        biased;
                        r = s.read(&mut buf) => !matches!(r, Ok(n) if n > 0),
                        () = std::future::ready(()) => false,
                    }
                }
                _ => false,
            },
        }
    }

    async fn send(&mut self, message: &str) -> io::Result<()> {
        if self.closed_by_peer().await {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the collector closed the connection",
            ));
        }
        let write = async {
            match self {
                Self::Udp(s) => s.send(message.as_bytes()).await.map(|_| ()),
                Self::Tcp(s) => {
                    s.write_all(&frame_octet_counted(message)).await?;
                    s.flush().await
                }
                Self::Tls(s) => {
                    s.write_all(&frame_octet_counted(message)).await?;
                    s.flush().await
                }
            }
        };
        tokio::time::timeout(IO_TIMEOUT, write).await.map_err(|_| timed_out())?
    }
}

async fn run(
    d: Arc<Destination>,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Jitter>,
    observer: Arc<dyn SyslogObserver>,
) {
    let mut retry = Retry::default();
    let mut connection: Option<Connection> = None;
    loop {
        let notified = d.wake.notified();
        if d.queue().is_empty() {
            notified.await;
            continue;
        }
        let now = clock.monotonic();
        if let Some(at) = retry.next_attempt().filter(|_| !retry.may_attempt(now)) {
            tokio::time::sleep(at.since(now)).await;
            continue;
        }
        // Taken out while it is on its way, so that a full queue cannot
        // drop it meanwhile; put back in front if sending fails.
        let Some(message) = ({
            let mut q = d.queue();
            let m = q.take();
            d.in_flight.store(m.is_some(), Ordering::Relaxed);
            m
        }) else {
            continue;
        };
        let result = match connection.as_mut() {
            Some(c) => c.send(&message).await,
            None => match connect(&d).await {
                Ok(mut c) => {
                    let r = c.send(&message).await;
                    connection = Some(c);
                    r
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => {
                d.connected.store(true, Ordering::Relaxed);
                retry.succeeded();
                d.sent.fetch_add(1, Ordering::Relaxed);
                let report = {
                    let mut q = d.queue();
                    d.in_flight.store(false, Ordering::Relaxed);
                    q.take_drop_report()
                };
                observer.sent(&d.label);
                if let Some(r) = report {
                    observer.dropped(&d.label, r.count);
                }
            }
            Err(e) => {
                {
                    let mut q = d.queue();
                    q.put_back(message);
                    d.in_flight.store(false, Ordering::Relaxed);
                }
                connection = None;
                d.connected.store(false, Ordering::Relaxed);
                let delay = retry.failed(clock.monotonic(), jitter.next());
                tracing::debug!(destination = %d.label, error = %e, retry_in = ?delay, "syslog send failed");
                observer.failed(&d.label, &e.to_string());
            }
        }
    }
}
