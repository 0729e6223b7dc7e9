//! Every rustls type the server uses, and the certificate resolver that lets
//! a new certificate take effect for new connections without a restart.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
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
    // returning clients; keys rotate every 6 hours.
    config.ticketer = portcullis_cert::crypto::ticketer()?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
    // Two tickets per connection: a TLS 1.3 ticket is used once, and a
    // browser coming back opens more than one connection.
    config.send_tls13_tickets = 2;
    Ok(Arc::new(config))
}
