//! The senders against real peers on loopback: aiosmtpd (Debian's
//! python3-aiosmtpd) as SMTP server, TCP/HTTP/HTTPS receivers written here,
//! and sipp (Debian's sip-tester) as the callee. Every peer is started by the
//! test, on a free port; every wait polls a condition under a timeout.
//!
//! Needs `scripts/install-test-deps` (python3-aiosmtpd, sip-tester, openssl).
//! Built only with every channel (the default features).
#![cfg(all(feature = "email", feature = "ip-notify", feature = "sip"))]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use portcullis_core::alert::AlertContext;
use portcullis_core::profiles::{
    DeliveryMode, EmailProfile, EmailSecurity, IpNotifyProfile, IpNotifyProtocol, PhoneProfile, Secret,
    SipTransport,
};
use portcullis_notify::media::{alaw_to_linear, ulaw_to_linear};
use portcullis_notify::{
    DeliveryQueue, Job, Notification, NotifyError, Outcome, QueueConfig, RetryPolicy, place_call, send_email,
    send_ip_notify,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Longest any single wait for a peer may take.
const WAIT: Duration = Duration::from_secs(20);
/// Debian's python, which has aiosmtpd (a pyenv python on PATH does not).
const PYTHON: &str = "/usr/bin/python3";

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

fn context() -> AlertContext {
    AlertContext {
        device: "cam-lobby".into(),
        event: "intrusion_alert".into(),
        message: "too many failed logins".into(),
        client_ip: Some("192.0.2.66".parse().expect("ip")),
        // Attacker-chosen: a quote must not break a JSON body.
        user: Some("eve\"admin".into()),
        count: 6,
        time: time::macros::datetime!(2026-03-04 05:06:07 UTC),
    }
}

const LOGFILE: &str = "2026-03-04T05:06:07Z  192.0.2.66  eve\"admin  6 x  unauthorized\n";

/// Polls `check` every 20 ms until it returns `Some`, or fails after `limit`.
async fn poll<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> Result<u16> {
    // A port free for both TCP and UDP at the time of asking.
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port")
}

/// Whether something listens on 127.0.0.1:`port` (per /proc, without touching the peer).
fn listening(port: u16, udp: bool) -> bool {
    let file = if udp { "/proc/net/udp" } else { "/proc/net/tcp" };
    let Ok(text) = std::fs::read_to_string(file) else { return false };
    let want = format!(":{port:04X}");
    text.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        cols.len() > 3 && cols[1].ends_with(&want) && (udp || cols[3] == "0A")
    })
}

// ---------------------------------------------------------------- certificates

/// A CA and a leaf for localhost/127.0.0.1 made by openssl.
struct Certs {
    ca_pem: String,
    leaf: PathBuf,
    key: PathBuf,
}

fn make_certs(dir: &Path) -> Result<Certs> {
    let run = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output()?;
        ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Notify Test CA"],
    ]
    .concat())?;
    run(
        &[&["req"][..], &ec, &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost"]].concat()
    )?;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "leaf.pem",
        "-extfile",
        "ext.cnf",
    ])?;
    Ok(Certs {
        ca_pem: std::fs::read_to_string(dir.join("ca.pem"))?,
        leaf: dir.join("leaf.pem"),
        key: dir.join("leaf.key"),
    })
}

// ---------------------------------------------------------------- SMTP sink

struct SmtpSink {
    port: u16,
    out: PathBuf,
    _child: Child,
}

impl SmtpSink {
    async fn start(dir: &Path, mode: &str, certs: Option<&Certs>, auth: Option<&str>) -> Result<Self> {
        let port = free_port()?;
        let out = dir.join(format!("mail-{mode}"));
        std::fs::create_dir_all(&out)?;
        let mut cmd = Command::new(PYTHON);
        cmd.arg(peers_dir().join("smtp_sink.py"))
            .args(["--port", &port.to_string(), "--mode", mode])
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(c) = certs {
            cmd.arg("--cert").arg(&c.leaf).arg("--key").arg(&c.key);
        }
        if let Some(a) = auth {
            cmd.args(["--auth", a]);
        }
        let mut child = cmd.spawn().context("start the SMTP sink (is python3-aiosmtpd installed?)")?;
        let stdout = child.stdout.take().context("sink stdout")?;
        let mut line = String::new();
        tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut line))
            .await
            .context("SMTP sink did not start")??;
        ensure!(line.trim() == "READY", "SMTP sink said {line:?}");
        Ok(Self { port, out, _child: child })
    }

    async fn message(&self, n: usize) -> Result<serde_json::Value> {
        let path = self.out.join(format!("{n}.json"));
        let text =
            poll("the SMTP sink to receive a message", WAIT, || std::fs::read_to_string(&path).ok()).await?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn email_profile(port: u16, security: EmailSecurity) -> EmailProfile {
    EmailProfile {
        server: "127.0.0.1".into(),
        port: Some(port),
        security,
        from: "camera@example.com".into(),
        to: vec!["ops@example.com".into(), "guard@example.com".into()],
        subject: "Alert on {device}: {count} failures from {client_ip}".into(),
        body: "User {user} at {time}: {message}".into(),
        ..Default::default()
    }
}

fn check_received(mail: &serde_json::Value) {
    assert_eq!(mail["mail_from"], "camera@example.com");
    assert_eq!(mail["rcpt_tos"], serde_json::json!(["ops@example.com", "guard@example.com"]));
    assert_eq!(mail["subject"], "Alert on cam-lobby: 6 failures from 192.0.2.66");
    let parts = mail["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 2, "{mail}");
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert!(
        parts[0]["text"].as_str().is_some_and(|t| t.contains("User eve\"admin at 2026-03-04T05:06:07Z")),
        "{mail}"
    );
    assert_eq!(parts[1]["filename"], "webserver-log.txt");
    assert_eq!(parts[1]["content_type"], "text/plain");
    // MIME text travels with CRLF line ends; the content is the logfile.
    let attached = parts[1]["text"].as_str().map(|t| t.replace("\r\n", "\n"));
    assert_eq!(attached.as_deref(), Some(LOGFILE), "the attachment is the logfile with the attacker's entry");
}

#[tokio::test]
async fn email_plain_reaches_aiosmtpd_with_logfile_attached() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sink = SmtpSink::start(dir.path(), "plain", None, None).await?;
    let delivery = send_email(&email_profile(sink.port, EmailSecurity::None), &context(), LOGFILE).await?;
    assert_eq!(delivery.reached, vec!["ops@example.com", "guard@example.com"]);
    let mail = sink.message(1).await?;
    check_received(&mail);
    assert_eq!(mail["tls"], false);
    Ok(())
}

#[tokio::test]
async fn email_starttls_with_login_and_private_ca() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = make_certs(dir.path())?;
    let sink = SmtpSink::start(dir.path(), "starttls", Some(&certs), Some("alarm:s3cret")).await?;
    let mut profile = email_profile(sink.port, EmailSecurity::Starttls);
    profile.username = Some("alarm".into());
    profile.password = Some(Secret::new("s3cret"));

    // Certificate verification is on: without the CA the server is not trusted.
    let untrusted = send_email(&profile, &context(), LOGFILE).await.expect_err("untrusted certificate");
    assert_eq!(untrusted.code(), "tls_failed", "{untrusted}");

    profile.ca_pem = Some(certs.ca_pem.clone());
    send_email(&profile, &context(), LOGFILE).await?;
    let mail = sink.message(1).await?;
    check_received(&mail);
    assert_eq!(
        (&mail["tls"], &mail["authenticated"], &mail["login"]),
        (&serde_json::json!(true), &serde_json::json!(true), &serde_json::json!("alarm"))
    );

    // A wrong password is refused by the server, and the error does not show it.
    profile.password = Some(Secret::new("wrong-pw"));
    let refused = send_email(&profile, &context(), LOGFILE).await.expect_err("bad login");
    assert_eq!(refused.code(), "smtp_refused", "{refused}");
    assert!(!refused.to_string().contains("wrong-pw"));

    // The STARTTLS-only server, asked without TLS: a readable reason.
    profile.security = EmailSecurity::None;
    profile.password = Some(Secret::new("s3cret"));
    let no_tls = send_email(&profile, &context(), LOGFILE).await.expect_err("needs STARTTLS");
    assert_eq!(no_tls.code(), "smtp_auth_unavailable", "{no_tls}");
    assert!(no_tls.to_string().contains("STARTTLS"));
    Ok(())
}

#[tokio::test]
async fn email_implicit_tls_with_login() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = make_certs(dir.path())?;
    let sink = SmtpSink::start(dir.path(), "tls", Some(&certs), Some("alarm:s3cret")).await?;
    let mut profile = email_profile(sink.port, EmailSecurity::Tls);
    profile.username = Some("alarm".into());
    profile.password = Some(Secret::new("s3cret"));
    profile.ca_pem = Some(certs.ca_pem.clone());
    send_email(&profile, &context(), LOGFILE).await?;
    let mail = sink.message(1).await?;
    check_received(&mail);
    assert_eq!(mail["tls"], true);
    Ok(())
}

#[tokio::test]
async fn email_starttls_required_is_not_downgraded() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sink = SmtpSink::start(dir.path(), "plain", None, None).await?;
    let e = send_email(&email_profile(sink.port, EmailSecurity::Starttls), &context(), LOGFILE)
        .await
        .expect_err("the plain server offers no STARTTLS");
    assert_eq!(e.code(), "starttls_unavailable", "{e}");
    assert!(!sink.out.join("1.json").exists(), "nothing was sent in clear text");
    Ok(())
}

// ---------------------------------------------------------------- IP Notify receivers

/// What an HTTP receiver got.
#[derive(Debug, Clone)]
struct Received {
    head: String,
    body: String,
}

/// A plain TCP or HTTP(S) receiver written for the test; answers `status`.
struct Receiver {
    addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    async fn start(kind: &'static str, status: u16, tls: Option<tokio_rustls::TlsAcceptor>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, tls) = (tx.clone(), tls.clone());
                tokio::spawn(async move {
                    let got = match tls {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => serve(s, kind, status).await,
                            Err(_) => None,
                        },
                        None => serve(stream, kind, status).await,
                    };
                    if let Some(r) = got {
                        let _ = tx.send(r);
                    }
                });
            }
        });
        Ok(Self { addr, rx })
    }

    async fn next(&mut self) -> Result<Received> {
        tokio::time::timeout(WAIT, self.rx.recv()).await.context("nothing received")?.context("receiver gone")
    }
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    kind: &str,
    status: u16,
) -> Option<Received> {
    let mut buf = Vec::new();
    if kind == "tcp" {
        tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await.ok()?.ok()?;
        return Some(Received { head: String::new(), body: String::from_utf8(buf).ok()? });
    }
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).ok()?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8(buf[end + 4..end + 4 + length].to_vec()).ok()?;
                let reply =
                    format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                s.write_all(reply.as_bytes()).await.ok()?;
                let _ = s.shutdown().await;
                return Some(Received { head, body });
            }
        }
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn tls_acceptor(certs: &Certs) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(&certs.leaf)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&certs.key)?;
    let provider = Arc::new(portcullis_cert::crypto::provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn closed_port() -> Result<String> {
    Ok(format!("127.0.0.1:{}", free_port()?))
}

#[tokio::test]
async fn ip_notify_tcp_and_http_get_the_filled_in_message() -> Result<()> {
    let mut tcp = Receiver::start("tcp", 200, None).await?;
    let profile = IpNotifyProfile {
        destinations: vec![tcp.addr.to_string()],
        protocol: IpNotifyProtocol::Tcp,
        content_type: "text/plain".into(),
        body: "ALERT {device} {event} from {client_ip} user={user} count={count}\n".into(),
        ..Default::default()
    };
    send_ip_notify(&profile, &context()).await?;
    assert_eq!(
        tcp.next().await?.body,
        "ALERT cam-lobby intrusion_alert from 192.0.2.66 user=eve\"admin count=6\n"
    );

    let mut http = Receiver::start("http", 200, None).await?;
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("X-Device-Alert".to_string(), "1".to_string());
    let profile = IpNotifyProfile {
        destinations: vec![http.addr.to_string()],
        path: "/hooks/alarm?camera=lobby".into(),
        headers,
        username: Some("hook".into()),
        password: Some(Secret::new("hookpw")),
        ..Default::default()
    };
    let delivery = send_ip_notify(&profile, &context()).await?;
    assert_eq!(delivery.reached, vec![http.addr.to_string()]);
    let got = http.next().await?;
    assert!(got.head.starts_with("POST /hooks/alarm?camera=lobby HTTP/1.1\r\n"), "{}", got.head);
    let head = got.head.to_ascii_lowercase();
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("x-device-alert: 1"), "{head}");
    let basic = base64::engine::general_purpose::STANDARD.encode("hook:hookpw").to_ascii_lowercase();
    assert!(head.contains(&format!("authorization: basic {basic}")), "{head}");
    // The default body is JSON, with the attacker's quote escaped.
    let json: serde_json::Value = serde_json::from_str(&got.body)?;
    assert_eq!(json["user"], "eve\"admin");
    assert_eq!(json["client_ip"], "192.0.2.66");
    assert_eq!(json["count"], 6);
    assert_eq!(json["device"], "cam-lobby");
    assert_eq!(json["time"], "2026-03-04T05:06:07Z");
    Ok(())
}

#[tokio::test]
async fn ip_notify_https_verifies_the_certificate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = make_certs(dir.path())?;
    let mut https = Receiver::start("http", 200, Some(tls_acceptor(&certs)?)).await?;
    let mut profile = IpNotifyProfile {
        destinations: vec![https.addr.to_string()],
        protocol: IpNotifyProtocol::Https,
        method: "PUT".into(),
        path: "/alert".into(),
        ..Default::default()
    };
    let untrusted = send_ip_notify(&profile, &context()).await.expect_err("unknown CA");
    assert_eq!(untrusted.code(), "tls_failed", "{untrusted}");
    profile.ca_pem = Some(certs.ca_pem.clone());
    send_ip_notify(&profile, &context()).await?;
    let got = https.next().await?;
    assert!(got.head.starts_with("PUT /alert HTTP/1.1"), "{}", got.head);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&got.body)?["event"], "intrusion_alert");
    Ok(())
}

#[tokio::test]
async fn ip_notify_modes() -> Result<()> {
    let mut a = Receiver::start("http", 200, None).await?;
    let mut b = Receiver::start("http", 200, None).await?;
    let dead = closed_port()?;

    // next_on_error: the dead one fails, the first live one gets it, the rest nothing.
    let profile = IpNotifyProfile {
        destinations: vec![dead.clone(), a.addr.to_string(), b.addr.to_string()],
        mode: DeliveryMode::NextOnError,
        ..Default::default()
    };
    let delivery = send_ip_notify(&profile, &context()).await?;
    assert_eq!(delivery.reached, vec![a.addr.to_string()]);
    a.next().await?;
    // The sender has returned, so a message to b would already be in its channel.
    assert!(b.rx.try_recv().is_err(), "next_on_error stops at the first success");

    // parallel and sequential: everyone.
    for mode in [DeliveryMode::Parallel, DeliveryMode::Sequential] {
        let profile = IpNotifyProfile {
            destinations: vec![a.addr.to_string(), b.addr.to_string()],
            mode,
            ..Default::default()
        };
        let delivery = send_ip_notify(&profile, &context()).await?;
        assert_eq!(delivery.reached.len(), 2, "{mode:?}");
        a.next().await?;
        b.next().await?;
    }

    // One unreachable destination among live ones: reported, naming it.
    let profile =
        IpNotifyProfile { destinations: vec![a.addr.to_string(), dead.clone()], ..Default::default() };
    let partial = send_ip_notify(&profile, &context()).await.expect_err("partial");
    assert_eq!(partial.code(), "partial_delivery");
    assert!(partial.to_string().contains(&dead), "{partial}");
    a.next().await?;

    // Only unreachable: a connect failure.
    let profile = IpNotifyProfile { destinations: vec![dead], ..Default::default() };
    let e = send_ip_notify(&profile, &context()).await.expect_err("unreachable");
    assert_eq!(e.code(), "connect_failed", "{e}");

    // An HTTP error status is a failure.
    let failing = Receiver::start("http", 503, None).await?;
    let profile = IpNotifyProfile { destinations: vec![failing.addr.to_string()], ..Default::default() };
    let e = send_ip_notify(&profile, &context()).await.expect_err("503");
    assert_eq!(e, NotifyError::HttpStatus { target: failing.addr.to_string(), status: 503 });
    Ok(())
}

// ---------------------------------------------------------------- SIP callee (sipp)

/// sipp running a UAS scenario in the foreground, on a free port.
struct Sipp {
    port: u16,
    child: Child,
    log: PathBuf,
}

impl Sipp {
    async fn start(
        dir: &Path,
        scenario: &str,
        transport: SipTransport,
        calls: u32,
        rtp_port: u16,
    ) -> Result<Self> {
        let port = free_port()?;
        let media_port = free_port()?;
        let log = dir.join(format!("{scenario}.log"));
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(peers_dir().join(scenario))
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", if transport == SipTransport::Udp { "u1" } else { "t1" }])
            .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
            .args(["-key", "rtp_port", &rtp_port.to_string()])
            .args(["-m", &calls.to_string(), "-timeout", "30s", "-timeout_error", "-nostdin"])
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(&log)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start sipp (is sip-tester installed?)")?;
        let udp = transport == SipTransport::Udp;
        poll("sipp to listen", WAIT, || listening(port, udp).then_some(())).await?;
        Ok(Self { port, child, log })
    }

    /// Waits for sipp to finish its calls; true when all succeeded.
    async fn finished_ok(&mut self) -> Result<bool> {
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.context("sipp did not finish")??;
        Ok(status.success())
    }

    fn messages(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A UDP socket standing in for the callee's media port, collecting RTP packets.
struct RtpCapture {
    port: u16,
    packets: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RtpCapture {
    async fn start() -> Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let port = socket.local_addr()?.port();
        let packets = Arc::new(Mutex::new(Vec::new()));
        let sink = packets.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok(n) = socket.recv(&mut buf).await {
                if let Ok(mut p) = sink.lock() {
                    p.push(buf[..n].to_vec());
                }
            }
        });
        Ok(Self { port, packets })
    }

    /// Waits for `n` packets and checks they form one G.711 stream of payload type `pt`.
    async fn expect_stream(&self, n: usize, pt: u8) -> Result<()> {
        let packets = poll(&format!("{n} RTP packets"), WAIT, || {
            self.packets.lock().ok().filter(|p| p.len() >= n).map(|p| p.clone())
        })
        .await?;
        ensure!(packets.len() == n, "expected {n} packets, got {}", packets.len());
        let seq = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
        let ts = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        let ssrc = |p: &[u8]| u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        let mut loudest = 0i32;
        for (i, p) in packets.iter().enumerate() {
            ensure!(p.len() == 12 + 160, "packet {i}: 20 ms of G.711 is 160 bytes, got {}", p.len() - 12);
            ensure!(p[0] == 0x80, "packet {i}: RTP version 2");
            ensure!(p[1] & 0x7F == pt, "packet {i}: payload type {}", p[1] & 0x7F);
            ensure!((p[1] & 0x80 != 0) == (i == 0), "packet {i}: marker only on the first");
            if i > 0 {
                let prev = &packets[i - 1];
                ensure!(seq(p) == seq(prev).wrapping_add(1), "packet {i}: sequence");
                ensure!(ts(p) == ts(prev).wrapping_add(160), "packet {i}: timestamp");
                ensure!(ssrc(p) == ssrc(prev), "packet {i}: SSRC");
            }
            for b in &p[12..] {
                let v = if pt == 0 { ulaw_to_linear(*b) } else { alaw_to_linear(*b) };
                loudest = loudest.max(i32::from(v).abs());
            }
        }
        ensure!(loudest > 5000, "the audio is audible (peak {loudest})");
        Ok(())
    }
}

fn phone_profile(port: u16, transport: SipTransport) -> PhoneProfile {
    PhoneProfile {
        uri: format!("sip:callee@127.0.0.1:{port}"),
        transport,
        ring_timeout_seconds: 10,
        ..Default::default()
    }
}

#[tokio::test]
async fn call_over_udp_plays_the_tone_sequence() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rtp = RtpCapture::start().await?;
    let mut sipp = Sipp::start(dir.path(), "uas_media.xml", SipTransport::Udp, 1, rtp.port).await?;
    let delivery = place_call(&phone_profile(sipp.port, SipTransport::Udp), &context()).await?;
    assert!(delivery.summary.contains("150 RTP packets, PCMU"), "{}", delivery.summary);
    assert!(delivery.summary.ends_with("hung up"), "{}", delivery.summary);
    // 3 s of tones in 20 ms packets.
    rtp.expect_stream(150, 0).await?;
    assert!(sipp.finished_ok().await?, "sipp saw INVITE/ACK/BYE as scripted:\n{}", sipp.messages());
    let log = sipp.messages();
    for step in [
        "INVITE sip:callee@127.0.0.1",
        "SIP/2.0 200 OK",
        "ACK sip:callee@127.0.0.1",
        "BYE sip:callee@127.0.0.1",
    ] {
        assert!(log.contains(step), "{step} missing in the sipp log:\n{log}");
    }
    assert!(log.contains("Subject: intrusion_alert on cam-lobby"), "{log}");
    Ok(())
}

/// A WAV file: `seconds` of a 16 kHz, 16-bit stereo 440 Hz tone.
fn wav_base64(seconds: u32) -> String {
    let rate = 16_000u32;
    let mut data = Vec::new();
    for i in 0..rate * seconds {
        let v =
            ((2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / f64::from(rate)).sin() * 16000.0) as i16;
        data.extend_from_slice(&v.to_le_bytes());
        data.extend_from_slice(&v.to_le_bytes());
    }
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    for field in [16u32.to_le_bytes().to_vec(), 1u16.to_le_bytes().to_vec(), 2u16.to_le_bytes().to_vec()] {
        wav.extend_from_slice(&field);
    }
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 4).to_le_bytes());
    wav.extend_from_slice(&4u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    base64::engine::general_purpose::STANDARD.encode(wav)
}

#[tokio::test]
async fn call_over_tcp_plays_an_uploaded_wav() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rtp = RtpCapture::start().await?;
    let mut sipp = Sipp::start(dir.path(), "uas_media.xml", SipTransport::Tcp, 1, rtp.port).await?;
    let mut profile = phone_profile(sipp.port, SipTransport::Tcp);
    profile.audio = Some(wav_base64(1));
    let delivery = place_call(&profile, &context()).await?;
    assert!(delivery.summary.contains("50 RTP packets"), "{}", delivery.summary);
    rtp.expect_stream(50, 0).await?;
    assert!(sipp.finished_ok().await?, "sipp log:\n{}", sipp.messages());
    assert!(sipp.messages().contains("SIP/2.0/TCP"), "the call went over TCP");
    Ok(())
}

#[tokio::test]
async fn call_registers_and_answers_digest_challenges() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rtp = RtpCapture::start().await?;
    let mut sipp = Sipp::start(dir.path(), "uas_register_auth.xml", SipTransport::Udp, 2, rtp.port).await?;
    let mut profile = phone_profile(sipp.port, SipTransport::Udp);
    profile.registrar = Some(format!("127.0.0.1:{}", sipp.port));
    profile.username = Some("alarm".into());
    profile.password = Some(Secret::new("s3cret"));
    let delivery = place_call(&profile, &context()).await?;
    // The callee offers only A-law.
    assert!(delivery.summary.contains("PCMA"), "{}", delivery.summary);
    rtp.expect_stream(150, 8).await?;
    assert!(sipp.finished_ok().await?, "sipp log:\n{}", sipp.messages());
    let log = sipp.messages();
    // REGISTER and INVITE were challenged and answered; the ACK repeats the
    // INVITE's credentials (RFC 3261 §22.1).
    assert_eq!(log.matches("Authorization: Digest username=\"alarm\"").count(), 3, "{log}");
    assert!(!log.contains("s3cret"), "the password never travels");
    Ok(())
}

#[tokio::test]
async fn call_with_a_wrong_password_fails_authentication() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut sipp = Sipp::start(dir.path(), "uas_register_auth.xml", SipTransport::Udp, 1, 9).await?;
    let mut profile = phone_profile(sipp.port, SipTransport::Udp);
    profile.registrar = Some(format!("127.0.0.1:{}", sipp.port));
    profile.username = Some("alarm".into());
    profile.password = Some(Secret::new("guess"));
    let e = place_call(&profile, &context()).await.expect_err("403");
    assert_eq!(e.code(), "sip_auth_failed", "{e}");
    assert!(!e.to_string().contains("guess"));
    sipp.finished_ok().await?;
    Ok(())
}

#[tokio::test]
async fn busy_callee_is_reported_as_failed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut sipp = Sipp::start(dir.path(), "uas_busy.xml", SipTransport::Udp, 1, 9).await?;
    let e = place_call(&phone_profile(sipp.port, SipTransport::Udp), &context()).await.expect_err("busy");
    assert_eq!(e, NotifyError::CallBusy { code: 486, reason: "Busy Here".into() });
    // The 486 was acknowledged, so sipp's scenario completed.
    assert!(sipp.finished_ok().await?, "sipp log:\n{}", sipp.messages());
    Ok(())
}

#[tokio::test]
async fn unanswered_call_is_cancelled_and_reported() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut sipp = Sipp::start(dir.path(), "uas_no_answer.xml", SipTransport::Udp, 1, 9).await?;
    let mut profile = phone_profile(sipp.port, SipTransport::Udp);
    // Below the 5 s a validated profile allows, to keep the test short.
    profile.ring_timeout_seconds = 1;
    let start = Instant::now();
    let e = place_call(&profile, &context()).await.expect_err("nobody answers");
    assert_eq!(e, NotifyError::NoAnswer { seconds: 1 });
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "gave up after the ring timeout: {:?}",
        start.elapsed()
    );
    // CANCEL answered and the 487 acknowledged: sipp's scenario completed.
    assert!(sipp.finished_ok().await?, "sipp log:\n{}", sipp.messages());
    assert!(sipp.messages().contains("CANCEL sip:callee@127.0.0.1"));
    Ok(())
}

// ---------------------------------------------------------------- the queue

fn fast_queue(capacity: usize) -> (DeliveryQueue, mpsc::UnboundedReceiver<Outcome>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = QueueConfig {
        capacity,
        concurrency: 2,
        retry: RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(50),
            factor: 2,
            attempt_timeout: Duration::from_secs(30),
        },
    };
    let queue = DeliveryQueue::new(config, tokio::runtime::Handle::current(), move |o| {
        let _ = tx.send(o);
    });
    (queue, rx)
}

async fn next_outcome(rx: &mut mpsc::UnboundedReceiver<Outcome>) -> Result<Outcome> {
    tokio::time::timeout(WAIT, rx.recv()).await.context("no outcome")?.context("queue gone")
}

#[tokio::test]
async fn unreachable_smtp_server_and_sip_peer_fail_after_the_retries() -> Result<()> {
    let (queue, mut outcomes) = fast_queue(8);
    let smtp = email_profile(free_port()?, EmailSecurity::None);
    let start = Instant::now();
    let id = queue.try_enqueue(Job {
        profile_name: "ops".into(),
        notification: Notification::Email { profile: smtp, logfile_text: LOGFILE.into() },
        context: context(),
    })?;
    assert!(start.elapsed() < Duration::from_millis(50), "enqueueing does not wait for the delivery");
    let outcome = next_outcome(&mut outcomes).await?;
    assert_eq!((outcome.job_id, outcome.profile_name.as_str(), outcome.attempts), (id, "ops", 3));
    let e = outcome.result.expect_err("unreachable");
    assert_eq!(e.code(), "connect_failed", "{e}");

    let phone = phone_profile(free_port()?, SipTransport::Udp);
    queue.try_enqueue(Job {
        profile_name: "guard".into(),
        notification: Notification::Phone(phone),
        context: context(),
    })?;
    let outcome = next_outcome(&mut outcomes).await?;
    assert_eq!(outcome.attempts, 3);
    let e = outcome.result.expect_err("unreachable");
    assert_eq!(e.code(), "connect_failed", "{e}");
    poll("the queue to drain", WAIT, || (queue.pending() == 0).then_some(())).await?;
    Ok(())
}

#[tokio::test]
async fn queue_delivers_and_retries_only_the_failed_destinations() -> Result<()> {
    let (queue, mut outcomes) = fast_queue(8);
    let mut a = Receiver::start("tcp", 200, None).await?;
    let late_port = free_port()?;
    let profile = IpNotifyProfile {
        destinations: vec![a.addr.to_string(), format!("127.0.0.1:{late_port}")],
        protocol: IpNotifyProtocol::Tcp,
        ..Default::default()
    };
    queue.try_enqueue(Job {
        profile_name: "siem".into(),
        notification: Notification::IpNotify(profile),
        context: context(),
    })?;
    a.next().await?;
    // The second destination comes up while the queue waits to retry.
    let late = TcpListener::bind(("127.0.0.1", late_port)).await?;
    let (mut stream, _) = tokio::time::timeout(WAIT, late.accept()).await??;
    let mut body = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut body)).await??;
    assert!(body.contains("\"event\":\"intrusion_alert\""), "{body}");
    let outcome = next_outcome(&mut outcomes).await?;
    let delivery = outcome.result.expect("delivered on retry");
    assert!(outcome.attempts >= 2);
    assert_eq!(delivery.reached.len(), 2, "{delivery:?}");
    assert!(a.rx.try_recv().is_err(), "the first destination got the message once");
    Ok(())
}

#[tokio::test]
async fn a_full_queue_drops_the_new_job_and_reports_it() -> Result<()> {
    let (queue, mut outcomes) = fast_queue(1);
    // A peer that accepts and never answers keeps the first job busy.
    let silent = TcpListener::bind("127.0.0.1:0").await?;
    let silent_addr = silent.local_addr()?;
    let profile = IpNotifyProfile { destinations: vec![silent_addr.to_string()], ..Default::default() };
    let job = Job {
        profile_name: "slow".into(),
        notification: Notification::IpNotify(profile),
        context: context(),
    };
    queue.try_enqueue(job.clone())?;
    let _held: TcpStream = {
        let (s, _) = tokio::time::timeout(WAIT, silent.accept()).await??;
        s
    };
    let e = queue.try_enqueue(Job { profile_name: "second".into(), ..job }).expect_err("full");
    assert_eq!(e, NotifyError::QueueFull { capacity: 1 });
    let outcome = next_outcome(&mut outcomes).await?;
    assert_eq!((outcome.profile_name.as_str(), outcome.attempts), ("second", 0));
    assert_eq!(outcome.result.map_err(|e| e.code().as_str()), Err("queue_full"));
    assert_eq!(queue.pending(), 1);
    Ok(())
}
