//! Every rustls type the server uses, and the certificate resolver that lets
//! a new certificate take effect for new connections without a restart.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol of the ACME tls-alpn-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Hands every TLS handshake the certificate in use now; swapping it never
/// touches open connections (they keep the key they negotiated with). While
/// an ACME tls-alpn-01 challenge is pending, a validator's handshake (ALPN
/// `acme-tls/1` for the identifier) gets the challenge certificate instead,
/// and an `acme-tls/1` handshake for any other name is refused.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
    challenges: std::sync::RwLock<std::collections::HashMap<String, Arc<CertifiedKey>>>,
    /// Whether `challenges` holds one (read per handshake without the lock).
    pending: std::sync::atomic::AtomicBool,
}

impl CertResolver {
    /// A resolver serving `key`.
    pub fn new(key: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::new(key),
            challenges: Default::default(),
            pending: Default::default(),
        })
    }

    /// Serves `key` to every new handshake from now on.
    pub fn swap(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }

    /// The certificate in use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Answers tls-alpn-01 handshakes for `identifier` with `cert`.
    pub fn set_challenge(&self, identifier: &str, cert: Arc<CertifiedKey>) {
        let mut challenges = self.challenges.write().unwrap_or_else(|e| e.into_inner());
        challenges.insert(identifier.to_ascii_lowercase(), cert);
        self.pending.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Removes every challenge certificate.
    pub fn clear_challenges(&self) {
        let mut challenges = self.challenges.write().unwrap_or_else(|e| e.into_inner());
        challenges.clear();
        self.pending.store(false, std::sync::atomic::Ordering::Release);
    }

    /// Whether a tls-alpn-01 challenge is pending.
    pub fn challenge_pending(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme && self.challenge_pending() {
            // Only the challenge certificate is served on acme-tls/1; a name
            // with no challenge is refused (access_denied).
            let challenges = self.challenges.read().unwrap_or_else(|e| e.into_inner());
            return hello.server_name().and_then(|n| challenges.get(&n.to_ascii_lowercase())).cloned();
        }
        // With no challenge pending, the configuration offers no acme-tls/1:
        // such a handshake ends with no_application_protocol.
        Some(self.current.load_full())
    }
}

/// The one crypto provider of the process (aws-lc-rs or ring, as built; never both).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(portcullis_cert::crypto::provider())
}

/// Installs the build's provider as the process default; harmless when already done.
pub fn install_default_provider() {
    let _ = portcullis_cert::crypto::provider().install_default();
}

/// The TLS configurations: one for HTTP, and the same offering ALPN
/// `acme-tls/1` too, used only while a tls-alpn-01 challenge is pending (so a
/// client offering only `acme-tls/1` otherwise gets no_application_protocol).
#[derive(Debug, Clone)]
pub struct TlsConfigs {
    http: Arc<ServerConfig>,
    acme: Arc<ServerConfig>,
    resolver: Arc<CertResolver>,
}

impl TlsConfigs {
    /// Both configurations around `resolver`; they share its certificates,
    /// the ticket keys and the session cache.
    pub fn new(resolver: Arc<CertResolver>) -> Result<Self, rustls::Error> {
        let http = server_config(resolver.clone())?;
        let mut acme = ServerConfig::clone(&http);
        // Last: only an ACME validator offers it, and only alone.
        if cfg!(feature = "acme") {
            acme.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        }
        Ok(Self { http, acme: Arc::new(acme), resolver })
    }

    /// The configuration for HTTP (its ticketer is shared with the other).
    pub fn http(&self) -> Arc<ServerConfig> {
        self.http.clone()
    }

    /// The configuration for a handshake starting now.
    pub fn for_handshake(&self) -> Arc<ServerConfig> {
        if self.resolver.challenge_pending() { self.acme.clone() } else { self.http.clone() }
    }
}

/// The TLS server configuration: TLS 1.3 and 1.2 only (1.0/1.1 are broken and
/// refused by every current browser), HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // The server's suite order (AEAD with forward secrecy, strongest first)
    // wins over the client's: a client preferring a weaker suite does not
    // get it (testssl reports a missing server cipher order as HIGH).
    config.ignore_client_order = true;
    // What the build lacks (HTTP/2) is not offered; acme-tls/1 is added
    // only by the configuration used while a challenge is pending (TlsConfigs).
    config.alpn_protocols = Vec::new();
    if cfg!(feature = "http2") {
        config.alpn_protocols.push(b"h2".to_vec());
    }
    config.alpn_protocols.push(b"http/1.1".to_vec());
    // Resumption by ticket saves a full handshake (an RSA signature) for
    // returning clients; keys rotate every 6 hours. Made at the first
    // handshake or by `warm_up`, not here: see `LazyTicketer`.
    config.ticketer = Arc::new(LazyTicketer::default());
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
    // Two tickets per connection: a TLS 1.3 ticket is used once, and a
    // browser coming back opens more than one connection.
    config.send_tls13_tickets = 2;
    Ok(Arc::new(config))
}

/// The provider's session ticketer, made when first needed instead of at start.
///
/// Why: making it draws the provider's first random bytes, and aws-lc seeds its
/// generator then from CPU timing jitter (`tree_jitter_initialize_once`): a
/// deliberate few tens of milliseconds that were most of the server's
/// start-up. Nothing served needs it before the first TLS handshake, which
/// needs random bytes anyway; [`warm_up`] makes it in the background as
/// soon as the listeners are open, so that handshake rarely waits.
#[derive(Debug, Default)]
struct LazyTicketer(OnceLock<Option<Arc<dyn ProducesTickets>>>);

impl LazyTicketer {
    fn get(&self) -> Option<&Arc<dyn ProducesTickets>> {
        self.0
            .get_or_init(|| match portcullis_cert::crypto::ticketer() {
                Ok(t) => Some(t),
                Err(e) => {
                    // Handshakes still work, without resumption.
                    tracing::error!(error = %e, "no TLS session tickets: the ticketer could not be made");
                    None
                }
            })
            .as_ref()
    }
}

impl ProducesTickets for LazyTicketer {
    fn enabled(&self) -> bool {
        self.get().is_some_and(|t| t.enabled())
    }
    fn lifetime(&self) -> u32 {
        self.get().map_or(0, |t| t.lifetime())
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.get()?.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.get()?.decrypt(cipher)
    }
}

/// Seeds aws-lc's random generator and makes the session ticketer of
/// `config` on a low-priority thread of its own; called once the listeners
/// answer. The ticketer is made when first needed, not with the
/// configuration: making it draws aws-lc's first random bytes, and aws-lc
/// seeds its generator then from CPU timing jitter, some tens of
/// milliseconds the listeners should not wait for. A handshake that comes
/// first waits for the same one-time seeding, no longer.
pub fn warm_up(config: Arc<ServerConfig>) {
    let spawned = std::thread::Builder::new().name("portcullis-rng".into()).spawn(move || {
        // Below the threads that answer requests, like the password checks.
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
        let _ = config.ticketer.enabled();
    });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "no warm-up thread; the first handshake seeds the generator");
    }
}
