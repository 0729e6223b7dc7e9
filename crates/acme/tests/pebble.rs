//! Enrolment against Debian's `pebble` ACME test server, with
//! `pebble-challtestsrv` as its DNS (every name answers 127.0.0.1). Each test
//! starts its own pair on free loopback ports and answers pebble's
//! validations on the `httpPort` / `tlsPort` of its config.
//!
//! Needs `apt-get install pebble` (scripts/install-test-deps).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use portcullis_acme::{AcmeError, AcmeSettings, Challenge, ChallengeResponder, Limits, enrol, enrol_with};
use portcullis_cert::KeyType;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// An EAB key id and HMAC key pebble is configured with (its example's first key).
const EAB_KID: &str = "kid-1";
const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

/// What the test's HTTP and TLS validation servers answer with.
#[derive(Default)]
struct Responder {
    http: Mutex<HashMap<String, String>>,
    tls: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    http_hits: AtomicUsize,
    tls_hits: AtomicUsize,
    clears: AtomicUsize,
}

impl ChallengeResponder for Responder {
    fn publish_http01(&self, token: &str, key_authorization: &str) {
        lock(&self.http).insert(token.to_owned(), key_authorization.to_owned());
    }
    fn publish_tls_alpn01(&self, identifier: &str, cert: Arc<CertifiedKey>) {
        lock(&self.tls).insert(identifier.to_owned(), cert);
    }
    fn clear(&self) {
        lock(&self.http).clear();
        lock(&self.tls).clear();
        self.clears.fetch_add(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug)]
struct AlpnResolver(Arc<Responder>);

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

impl ResolvesServerCert for AlpnResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn()?.any(|p| p == portcullis_acme::ACME_TLS_ALPN_PROTOCOL);
        if !acme {
            return None;
        }
        let name = hello.server_name()?.trim_end_matches('.').to_ascii_lowercase();
        let cert = lock(&self.0.tls).get(&name).cloned();
        if cert.is_some() {
            self.0.tls_hits.fetch_add(1, Ordering::SeqCst);
        }
        cert
    }
}

/// Serves http-01 answers on `listener` (one request per connection).
fn serve_http01(listener: TcpListener, responder: Arc<Responder>) {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let responder = responder.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let answer = path
                    .strip_prefix("/.well-known/acme-challenge/")
                    .and_then(|token| lock(&responder.http).get(token).cloned());
                let response = match answer {
                    Some(body) => {
                        responder.http_hits.fetch_add(1, Ordering::SeqCst);
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                    }
                };
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
}

/// Serves tls-alpn-01 handshakes on `listener`.
fn serve_tls_alpn01(listener: TcpListener, responder: Arc<Responder>) {
    let provider = Arc::new(portcullis_cert::crypto::provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(AlpnResolver(responder)));
    config.alpn_protocols = vec![portcullis_acme::ACME_TLS_ALPN_PROTOCOL.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // The validator closes after the handshake; nothing to serve.
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
}

/// A running pebble + pebble-challtestsrv pair; killed on drop.
struct Pebble {
    _challtestsrv: Child,
    pebble: Child,
    dns: u16,
    listen: u16,
    dir: tempfile::TempDir,
    directory_url: String,
    management: SocketAddr,
    ca_pem: String,
    responder: Arc<Responder>,
}

async fn free_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind loopback")
}

async fn free_port() -> u16 {
    free_listener().await.local_addr().expect("addr").port()
}

/// A CA and a server certificate for pebble's own HTTPS listeners.
fn pebble_tls(dir: &Path) -> Result<String> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "portcullis test CA for pebble");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::write(dir.join("cert.pem"), cert.pem())?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
    Ok(ca_cert.pem())
}

/// Starts pebble with the config in `dir`, resolving names through the DNS on port `dns`.
fn spawn_pebble(dir: &Path, dns: u16) -> Result<Child> {
    let log = |name: &str| -> Result<Stdio> {
        Ok(std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name))?.into())
    };
    Command::new("pebble")
        .arg("-config")
        .arg(dir.join("pebble.json"))
        .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        // Deterministic tests: no random badNonce rejections.
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(log("pebble.log")?)
        .stderr(log("pebble.err")?)
        .kill_on_drop(true)
        .spawn()
        .context("starting pebble (apt-get install pebble)")
}

async fn wait_for_port(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not listen on port {port} within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Starts pebble (EAB required when `eab` is true) and the validation servers.
async fn start_pebble(eab: bool) -> Result<Pebble> {
    start_pebble_with(eab, None).await
}

/// Starts pebble, issuing certificates valid for `validity_seconds` when given.
async fn start_pebble_with(eab: bool, validity_seconds: Option<u64>) -> Result<Pebble> {
    // The crate's warnings (e.g. a failed contact update) appear with a failing test's output.
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = tempfile::tempdir()?;
    let ca_pem = pebble_tls(dir.path())?;
    let (listen, management, dns, dns_management) =
        (free_port().await, free_port().await, free_port().await, free_port().await);
    // The validation ports stay bound by us from the start: they are pebble's
    // httpPort and tlsPort, and no other process can take them meanwhile.
    let http = free_listener().await;
    let tls = free_listener().await;
    let mut config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{listen}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": dir.path().join("cert.pem"),
        "privateKey": dir.path().join("key.pem"),
        "httpPort": http.local_addr()?.port(),
        "tlsPort": tls.local_addr()?.port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": eab,
    }});
    if let Some(seconds) = validity_seconds {
        config["pebble"]["certificateValidityPeriod"] = seconds.into();
    }
    if eab {
        config["pebble"]["externalAccountMACKeys"] = serde_json::json!({ EAB_KID: EAB_KEY });
    }
    let config_path = dir.path().join("pebble.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;

    let log = |name: &str| -> Result<Stdio> { Ok(std::fs::File::create(dir.path().join(name))?.into()) };
    let challtestsrv = Command::new("pebble-challtestsrv")
        .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        .args(["-dns01", &format!("127.0.0.1:{dns}")])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
        .args(["-management", &format!("127.0.0.1:{dns_management}")])
        .stdout(log("challtestsrv.log")?)
        .stderr(log("challtestsrv.err")?)
        .kill_on_drop(true)
        .spawn()
        .context("starting pebble-challtestsrv (apt-get install pebble)")?;
    let pebble = spawn_pebble(dir.path(), dns)?;
    wait_for_port(dns_management, "pebble-challtestsrv").await?;
    wait_for_port(listen, "pebble").await?;
    wait_for_port(management, "pebble management").await?;

    let responder = Arc::new(Responder::default());
    serve_http01(http, responder.clone());
    serve_tls_alpn01(tls, responder.clone());
    Ok(Pebble {
        _challtestsrv: challtestsrv,
        pebble,
        dns,
        listen,
        dir,
        directory_url: format!("https://127.0.0.1:{listen}/dir"),
        management: SocketAddr::from(([127, 0, 0, 1], management)),
        ca_pem,
        responder,
    })
}

impl Pebble {
    /// Restarts pebble on the same ports: it forgets every account and order
    /// and makes a new CA, as a real CA that lost or deactivated the account.
    async fn restart(&mut self) -> Result<()> {
        self.pebble.kill().await?;
        self.pebble = spawn_pebble(self.dir.path(), self.dns)?;
        wait_for_port(self.listen, "pebble (restarted)").await
    }

    fn settings(&self, identifiers: &[&str], challenge: Challenge) -> AcmeSettings {
        AcmeSettings {
            enabled: true,
            directory_url: self.directory_url.clone(),
            contact: vec!["ops@example.com".into()],
            identifiers: identifiers.iter().map(|s| (*s).to_owned()).collect(),
            challenge,
            key_type: KeyType::EcdsaP256,
            ca_bundle_pem: Some(self.ca_pem.clone()),
            ..AcmeSettings::default()
        }
    }

    /// GET on pebble's management API (HTTPS, our test CA).
    async fn management_get(&self, path: &str) -> Result<String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes())?)?;
        let provider = Arc::new(portcullis_cert::crypto::provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(self.management).await?;
        let mut tls = connector.connect(ServerName::try_from("localhost")?, tcp).await?;
        tls.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut response = Vec::new();
        // Go closes without close_notify at times; what was read is complete then.
        let _ = tls.read_to_end(&mut response).await;
        let text = String::from_utf8(response)?;
        let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("management {path}: {head}");
        }
        Ok(body.to_owned())
    }
}

/// The certificates of a PEM chain.
fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>().expect("PEM chain")
}

/// Subject alternative names of a certificate, as text.
fn sans(der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parses");
    cert.subject_alternative_name()
        .expect("SAN extension")
        .map(|san| san.value.general_names.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

fn issuer_cn(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parses");
    cert.issuer().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_http01_dns_and_ip() -> Result<()> {
    let pebble = start_pebble(false).await?;
    let settings = pebble.settings(&["device.example.com", "127.0.0.1"], Challenge::Http01);
    let started = Instant::now();
    let (enrolled, account) = enrol(&settings, None, pebble.responder.as_ref()).await?;
    eprintln!("http-01 enrolment took {:?}", started.elapsed());

    let certs = chain(&enrolled.chain_pem);
    assert_eq!(certs.len(), 2, "leaf + Pebble intermediate");
    assert!(issuer_cn(&certs[0]).contains("Pebble Intermediate CA"), "{}", issuer_cn(&certs[0]));
    let intermediate = pebble.management_get("/intermediates/0").await?;
    assert_eq!(
        certs[1],
        CertificateDer::from_pem_slice(intermediate.as_bytes())?,
        "served by pebble's intermediate"
    );
    let names = sans(&certs[0]);
    assert!(names.iter().any(|n| n.contains("device.example.com")), "{names:?}");
    assert!(names.iter().any(|n| n == "IPAddress(7f:00:00:01)"), "{names:?}");
    portcullis_cert::parse_stored(enrolled.chain_pem.as_bytes(), enrolled.key_pem.as_bytes())?;
    assert!(enrolled.not_after > enrolled.not_before);
    assert_eq!(portcullis_acme::validity(&enrolled.chain_pem)?, (enrolled.not_before, enrolled.not_after));
    assert!(pebble.responder.http_hits.load(Ordering::SeqCst) >= 2, "pebble validated through our responder");
    assert!(lock(&pebble.responder.http).is_empty(), "answers cleared after the order");
    assert!(account.contains(&pebble.directory_url));

    // A renewal with the stored account keeps it (and takes new contacts along).
    let settings = AcmeSettings { contact: vec!["new-ops@example.com".into()], ..settings };
    let (again, account_again) = enrol(&settings, Some(&account), pebble.responder.as_ref()).await?;
    assert_eq!(account_again, account, "the stored account is reused");
    assert_ne!(again.key_pem, enrolled.key_pem, "a fresh key per certificate");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_tls_alpn01_rsa() -> Result<()> {
    let pebble = start_pebble(false).await?;
    let mut settings =
        pebble.settings(&["alpn.example.com", "www.alpn.example.com", "127.0.0.1"], Challenge::TlsAlpn01);
    settings.key_type = KeyType::Rsa2048;
    let started = Instant::now();
    let (enrolled, _account) = enrol(&settings, None, pebble.responder.as_ref()).await?;
    eprintln!("tls-alpn-01 enrolment took {:?}", started.elapsed());
    let certs = chain(&enrolled.chain_pem);
    assert!(issuer_cn(&certs[0]).contains("Pebble Intermediate CA"));
    let (_, leaf) = x509_parser::parse_x509_certificate(&certs[0])?;
    assert_eq!(leaf.public_key().algorithm.algorithm, x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION);
    assert!(
        pebble.responder.tls_hits.load(Ordering::SeqCst) >= 3,
        "pebble validated all three through our TLS responder"
    );
    // Only answered when looked up by its reverse name (RFC 8738 §6).
    assert!(sans(&certs[0]).iter().any(|n| n == "IPAddress(7f:00:00:01)"), "{:?}", sans(&certs[0]));
    assert_eq!(pebble.responder.http_hits.load(Ordering::SeqCst), 0);
    assert!(lock(&pebble.responder.tls).is_empty(), "challenge certificates cleared");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_validation_is_explained() -> Result<()> {
    // The responder publishes nothing: pebble's http-01 fetch gets 404.
    #[derive(Default)]
    struct Mute(Mutex<Option<String>>);
    impl ChallengeResponder for Mute {
        fn publish_http01(&self, _: &str, _: &str) {}
        fn publish_tls_alpn01(&self, _: &str, _: Arc<CertifiedKey>) {}
        fn clear(&self) {}
        fn account_created(&self, credentials_json: &str) {
            *lock(&self.0) = Some(credentials_json.to_owned());
        }
    }
    let pebble = start_pebble(false).await?;
    let settings = pebble.settings(&["mute.example.com"], Challenge::Http01);
    let mute = Mute::default();
    let err = enrol(&settings, None, &mute).await.expect_err("validation fails");
    assert_eq!(err.code(), "validation_failed", "{err}");
    assert!(err.to_string().contains("mute.example.com"), "{err}");
    assert!(err.is_transient());
    eprintln!("{err}");

    // The account registered by the failed attempt was handed out, and the retry reuses it.
    let account = lock(&mute.0).clone().context("account_created was called")?;
    let (_, account_after) = enrol(&settings, Some(&account), pebble.responder.as_ref()).await?;
    assert_eq!(account_after, account);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_directory_fails_fast() -> Result<()> {
    let port = free_port().await;
    let settings = AcmeSettings {
        enabled: true,
        directory_url: format!("https://127.0.0.1:{port}/dir"),
        identifiers: vec!["device.example.com".into()],
        ..AcmeSettings::default()
    };
    let responder = Responder::default();
    let started = Instant::now();
    let err = enrol(&settings, None, &responder).await.expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(matches!(err, AcmeError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.code(), "acme_server_unreachable");
    assert!(err.to_string().contains(&settings.directory_url), "{err}");
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    eprintln!("{err}");

    // A server that accepts but never answers is bounded by the request timeout.
    let silent = free_listener().await;
    let silent_port = silent.local_addr()?.port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let settings = AcmeSettings { directory_url: format!("https://127.0.0.1:{silent_port}/dir"), ..settings };
    let limits = Limits { request: Duration::from_secs(2), ..Limits::default() };
    let started = Instant::now();
    let err = enrol_with(&settings, None, &responder, limits).await.expect_err("never answers");
    let took = started.elapsed();
    assert!(took >= limits.request && took < limits.request + Duration::from_secs(3), "{took:?}");
    assert_eq!(err.code(), "acme_server_unreachable", "{err}");
    eprintln!("{err} (after {took:?})");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_acme_server_is_refused() -> Result<()> {
    let pebble = start_pebble(false).await?;
    let mut settings = pebble.settings(&["device.example.com"], Challenge::Http01);
    let other_ca = rcgen::generate_simple_self_signed(vec!["other.example".to_owned()])?;
    settings.ca_bundle_pem = Some(other_ca.cert.pem());
    let err = enrol(&settings, None, pebble.responder.as_ref()).await.expect_err("untrusted");
    assert_eq!(err.code(), "acme_server_unreachable", "{err}");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    eprintln!("{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding() -> Result<()> {
    let pebble = start_pebble(true).await?;
    let mut settings = pebble.settings(&["eab.example.com"], Challenge::Http01);

    let err = enrol(&settings, None, pebble.responder.as_ref()).await.expect_err("EAB required");
    assert!(matches!(err, AcmeError::ExternalAccountRequired), "{err:?}");
    assert_eq!(err.code(), "eab_required");

    let wrong = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0x42u8; 48]);
    settings.eab_key_id = Some(EAB_KID.into());
    settings.eab_hmac_key = Some(wrong.clone());
    let err = enrol(&settings, None, pebble.responder.as_ref()).await.expect_err("wrong HMAC key");
    assert_eq!(err.code(), "account_rejected", "{err}");
    assert!(!err.to_string().contains(&wrong) && !format!("{err:?}").contains(&wrong), "never leaks the key");
    eprintln!("{err}");

    settings.eab_hmac_key = Some(EAB_KEY.into());
    let (enrolled, account) = enrol(&settings, None, pebble.responder.as_ref()).await?;
    assert!(issuer_cn(&chain(&enrolled.chain_pem)[0]).contains("Pebble Intermediate CA"));
    assert!(!account.contains(EAB_KEY), "the EAB key is not part of the stored account");
    // The stored account needs no EAB any more.
    settings.eab_key_id = None;
    settings.eab_hmac_key = None;
    enrol(&settings, Some(&account), pebble.responder.as_ref()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_of_another_directory_is_replaced() -> Result<()> {
    let first = start_pebble(false).await?;
    let (_, account) =
        enrol(&first.settings(&["one.example.com"], Challenge::Http01), None, first.responder.as_ref())
            .await?;
    drop(first);
    let second = start_pebble(false).await?;
    let settings = second.settings(&["two.example.com"], Challenge::Http01);
    let (_, new_account) = enrol(&settings, Some(&account), second.responder.as_ref()).await?;
    assert_ne!(new_account, account);
    assert!(new_account.contains(&second.directory_url));
    // Garbage in the store is not fatal either.
    enrol(&settings, Some("{not json"), second.responder.as_ref()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lifetime_renews_at_two_thirds() -> Result<()> {
    // What a renewal test of the server builds on: pebble's certificateValidityPeriod.
    let pebble = start_pebble_with(false, Some(90)).await?;
    let settings = pebble.settings(&["short.example.com"], Challenge::Http01);
    let (enrolled, _) = enrol(&settings, None, pebble.responder.as_ref()).await?;
    let lifetime = enrolled.not_after - enrolled.not_before;
    assert!(lifetime <= time::Duration::seconds(91), "{lifetime}");
    let renew = portcullis_core::acme::renewal_time(enrolled.not_before, enrolled.not_after);
    assert_eq!(renew, enrolled.not_before + lifetime * 2 / 3);
    assert!(renew < enrolled.not_after);
    eprintln!("lifetime {lifetime}, renewal at {renew}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_account_is_recreated() -> Result<()> {
    let mut pebble = start_pebble(false).await?;
    let settings = pebble.settings(&["forgotten.example.com"], Challenge::Http01);
    let (_, account) = enrol(&settings, None, pebble.responder.as_ref()).await?;
    pebble.restart().await?;
    let (enrolled, new_account) = enrol(&settings, Some(&account), pebble.responder.as_ref()).await?;
    assert_ne!(new_account, account, "a new account replaces the one the CA forgot");
    assert!(issuer_cn(&chain(&enrolled.chain_pem)[0]).contains("Pebble Intermediate CA"));
    Ok(())
}
