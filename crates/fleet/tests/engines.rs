//! portcullis-fleet against the real engines, started by the tests on free
//! loopback ports with private configurations in temporary folders:
//! rsyslogd (UDP, TCP, TLS; a collector down and back), the CrowdSec Local
//! API with cscli (decisions, a watcher's alert seen by another bouncer),
//! and promtool (the exposition text). `scripts/install-test-deps`
//! installs them.

// The whole file needs every integration (the minimal build has none).
#![cfg(all(feature = "metrics", feature = "syslog", feature = "crowdsec"))]

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use portcullis_core::access_control::{AccessControlSettings, AccessPolicy, Decision};
use portcullis_core::crowdsec::{BlockFacts, CrowdSecSettings, DecisionSet, StreamOutcome, admit};
use portcullis_core::events::{Event, EventKind};
use portcullis_core::profiles::Secret;
use portcullis_core::syslog::{SyslogDestination, SyslogSettings, SyslogTransport};
use portcullis_core::{Clock, SystemClock};
use portcullis_fleet::crowdsec::{Bouncer, CrowdSecObserver, LapiClient, LapiError, Signaller};
use portcullis_fleet::metrics::Metrics;
use portcullis_fleet::syslog::{SyslogExporter, SyslogObserver};
use portcullis_fleet::{Jitter, RandomJitter};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use portcullis_testkit::engines::{Engine, LIMIT, Lapi, Rsyslog, free_udp_port, need, udp_tcp_inputs};
use portcullis_testkit::free_port;

/// Polls `cond` every 50 ms for at most `limit`; whether it held.
async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event(id: u64, kind: EventKind, message: &str) -> Event {
    Event {
        id,
        time: time::OffsetDateTime::now_utc(),
        kind,
        actor: None,
        message: message.into(),
        details: serde_json::json!({"client": "192.0.2.66", "count": 6}),
    }
}

#[derive(Default)]
struct Seen {
    sent: Mutex<u64>,
    dropped: Mutex<u64>,
    failures: Mutex<Vec<String>>,
}

impl SyslogObserver for Seen {
    fn sent(&self, _: &str) {
        *self.sent.lock().expect("lock") += 1;
    }
    fn dropped(&self, _: &str, count: u64) {
        *self.dropped.lock().expect("lock") += count;
    }
    fn failed(&self, _: &str, error: &str) {
        self.failures.lock().expect("lock").push(error.to_string());
    }
}

#[derive(Debug, Clone, Copy)]
struct NoJitter;
impl Jitter for NoJitter {
    fn next(&self) -> f64 {
        0.0
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::new())
}

fn syslog_settings(destinations: Vec<SyslogDestination>) -> SyslogSettings {
    let s = SyslogSettings {
        enabled: true,
        destinations,
        hostname: Some("cam-test".into()),
        ..Default::default()
    };
    if let Err(e) = s.validate() {
        panic!("invalid settings: {e:?}");
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_udp_and_tcp_reaches_rsyslog_with_the_kind_as_msgid() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (udp, tcp) = (free_udp_port(), free_port());
    let rsyslog = Rsyslog::start(dir.path(), &udp_tcp_inputs(udp, tcp), "")?;
    let settings = syslog_settings(vec![
        SyslogDestination::new(format!("127.0.0.1:{udp}"), SyslogTransport::Udp),
        SyslogDestination::new(format!("127.0.0.1:{tcp}"), SyslogTransport::Tcp),
    ]);
    let seen = Arc::new(Seen::default());
    let exporter = SyslogExporter::start(&settings, "unused", clock(), Arc::new(RandomJitter), seen.clone())?;
    exporter.send_event(&event(
        1,
        EventKind::ClientBlocked,
        "client 192.0.2.66 blocked after 6 failed logins",
    ));
    exporter.send_event(&event(2, EventKind::ConfigChanged, "settings changed\nFAKE line"));
    let arrived = wait_until(LIMIT, || rsyslog.received().len() >= 4).await;
    let lines = rsyslog.received();
    assert!(arrived, "rsyslog received {lines:?}; failures {:?}", seen.failures.lock().expect("lock"));
    for input in ["imudp", "imtcp"] {
        let of: Vec<&String> = lines.iter().filter(|l| l.starts_with(input)).collect();
        assert_eq!(of.len(), 2, "{input}: {lines:?}");
        // local0 (16) * 8 + warning (4) = 132; the kind is the MSGID.
        assert!(
            of[0].starts_with(&format!(
                "{input} 132 client_blocked [portcullis@32473 event_id=\"1\" client=\"192.0.2.66\" count=\"6\"][meta sequenceId=\"1\"] client 192.0.2.66 blocked"
            )),
            "{}",
            of[0]
        );
        assert!(of[1].starts_with(&format!("{input} 133 config_changed ")), "{}", of[1]);
        assert!(
            of[1].contains("sequenceId=\"2\"") && of[1].ends_with("settings changed FAKE line"),
            "one line: {}",
            of[1]
        );
    }
    assert_eq!(*seen.sent.lock().expect("lock"), 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_collector_down_then_back_gets_the_queue_and_drops_are_counted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tcp = free_port();
    let rsyslog = Rsyslog::start(dir.path(), &udp_tcp_inputs(free_udp_port(), tcp), "")?;
    let destination = SyslogDestination::new(format!("127.0.0.1:{tcp}"), SyslogTransport::Tcp);
    down_then_back(rsyslog, destination).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tls_collector_down_then_back_gets_the_queue_and_drops_are_counted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = make_pki(dir.path())?;
    let port = free_port();
    let rsyslog =
        Rsyslog::start(dir.path(), &tls_inputs(port, free_port(), free_port()), &tls_globals(dir.path()))?;
    let destination = SyslogDestination {
        ca_pem: Some(pki.ca_pem),
        ..SyslogDestination::new(format!("127.0.0.1:{port}"), SyslogTransport::Tls)
    };
    down_then_back(rsyslog, destination).await
}

/// One message arrives; the collector stops; 15 are sent to a queue of 10;
/// the collector comes back and gets the last 10, and the 5 drops are
/// reported once.
async fn down_then_back(mut rsyslog: Rsyslog, destination: SyslogDestination) -> Result<()> {
    let mut settings = syslog_settings(vec![destination]);
    settings.queue_capacity = 10;
    let seen = Arc::new(Seen::default());
    let exporter = SyslogExporter::start(&settings, "unused", clock(), Arc::new(NoJitter), seen.clone())?;
    exporter.send_event(&event(1, EventKind::Startup, "first"));
    assert!(wait_until(LIMIT, || rsyslog.received().len() == 1).await, "{:?}", rsyslog.received());

    rsyslog.stop();
    // 15 events while the collector is down: the queue keeps the last 10.
    for i in 0..15 {
        exporter.send_event(&event(10 + i, EventKind::ClientBlocked, &format!("while down {i}")));
    }
    assert!(
        wait_until(LIMIT, || !seen.failures.lock().expect("lock").is_empty()).await,
        "the closed connection is noticed"
    );
    let stats = &exporter.stats()[0];
    assert_eq!((stats.queued, stats.dropped, stats.connected), (10, 5, false), "{stats:?}");
    assert_eq!(*seen.dropped.lock().expect("lock"), 0, "drops are reported once messages flow again");

    rsyslog.restart()?;
    assert!(exporter.flush(LIMIT).await, "the queue drained: {:?}", exporter.stats());
    assert!(wait_until(LIMIT, || rsyslog.received().len() == 11).await, "{:?}", rsyslog.received());
    let lines = rsyslog.received();
    assert!(
        lines[1].ends_with("while down 5") && lines[10].ends_with("while down 14"),
        "the oldest went: {lines:?}"
    );
    assert_eq!(*seen.dropped.lock().expect("lock"), 5, "reported once, with the count");
    assert_eq!(exporter.stats()[0].dropped, 5);
    Ok(())
}

struct TestPki {
    ca_pem: String,
    server_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

fn make_pki(dir: &Path) -> Result<TestPki> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "portcullis test CA for rsyslog");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "collector.test".to_owned()])?
        .signed_by(&key, &issuer)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("cert.pem"), cert.pem())?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
    Ok(TestPki { ca_pem: ca.pem(), server_der: cert.der().to_vec(), issuer })
}

fn tls_globals(dir: &Path) -> String {
    format!(
        "DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{d}/ca.pem\" \
         DefaultNetstreamDriverCertFile=\"{d}/cert.pem\" DefaultNetstreamDriverKeyFile=\"{d}/key.pem\"",
        d = dir.display()
    )
}

fn tls_inputs(anon: u16, anon2: u16, certvalid: u16) -> String {
    format!(
        "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{anon}\" name=\"anon\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{anon2}\" name=\"anon\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{certvalid}\" name=\"certvalid\" \
               streamDriver.mode=\"1\" streamDriver.authMode=\"x509/certvalid\")"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tls_is_verified_by_ca_or_pin_and_sends_a_client_certificate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = make_pki(dir.path())?;
    let (anon, anon2, certvalid) = (free_port(), free_port(), free_port());
    let rsyslog = Rsyslog::start(dir.path(), &tls_inputs(anon, anon2, certvalid), &tls_globals(dir.path()))?;

    let by_ca = SyslogDestination {
        ca_pem: Some(pki.ca_pem.clone()),
        ..SyslogDestination::new(format!("127.0.0.1:{anon}"), SyslogTransport::Tls)
    };
    use sha2::Digest;
    let pin = hex(&sha2::Sha256::digest(&pki.server_der));
    let by_pin = SyslogDestination {
        pinned_sha256: Some(pin),
        ..SyslogDestination::new(format!("127.0.0.1:{anon2}"), SyslogTransport::Tls)
    };
    let client_key = KeyPair::generate()?;
    let client_cert =
        CertificateParams::new(vec!["cam-test".to_owned()])?.signed_by(&client_key, &pki.issuer)?;
    let with_client_cert = SyslogDestination {
        ca_pem: Some(pki.ca_pem.clone()),
        server_name: Some("collector.test".into()),
        client_certificate_pem: Some(client_cert.pem()),
        client_key_pem: Some(Secret::new(client_key.serialize_pem())),
        ..SyslogDestination::new(format!("127.0.0.1:{certvalid}"), SyslogTransport::Tls)
    };
    let seen = Arc::new(Seen::default());
    let exporter = SyslogExporter::start(
        &syslog_settings(vec![by_ca, by_pin, with_client_cert]),
        "unused",
        clock(),
        Arc::new(RandomJitter),
        seen.clone(),
    )?;
    exporter.send_event(&event(7, EventKind::CertificateChanged, "certificate replaced"));
    let ok = wait_until(LIMIT, || rsyslog.received().len() >= 3).await;
    let lines = rsyslog.received();
    assert!(ok, "{lines:?}; failures {:?}", seen.failures.lock().expect("lock"));
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("anon 133 certificate_changed ")).count(),
        2,
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("certvalid 133 certificate_changed ")).count(),
        1,
        "{lines:?}"
    );
    exporter.stop();

    // A collector whose certificate does not chain to the CA given gets nothing.
    let other_dir = tempfile::tempdir()?;
    let other = make_pki(other_dir.path())?;
    let wrong = SyslogDestination {
        ca_pem: Some(other.ca_pem),
        ..SyslogDestination::new(format!("127.0.0.1:{anon}"), SyslogTransport::Tls)
    };
    let seen = Arc::new(Seen::default());
    let exporter = SyslogExporter::start(
        &syslog_settings(vec![wrong]),
        "unused",
        clock(),
        Arc::new(NoJitter),
        seen.clone(),
    )?;
    exporter.send_event(&event(8, EventKind::ConfigChanged, "must not arrive"));
    assert!(wait_until(LIMIT, || !seen.failures.lock().expect("lock").is_empty()).await);
    let failure = seen.failures.lock().expect("lock")[0].clone();
    assert!(failure.to_lowercase().contains("certificate"), "{failure}");
    assert_eq!(exporter.stats()[0].sent, 0);
    assert!(!rsyslog.received().iter().any(|l| l.contains("must not arrive")));
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The settings of a bouncer of `lapi` with `key`, polling every second.
fn lapi_settings(lapi: &Lapi, key: &str) -> CrowdSecSettings {
    let s = CrowdSecSettings {
        enabled: true,
        lapi_url: format!("http://127.0.0.1:{}", lapi.port),
        bouncer_key: Some(Secret::new(key)),
        poll_interval_seconds: 1,
        ..Default::default()
    };
    s.validate().expect("valid settings");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapi_over_https_is_verified_against_the_ca_given() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = make_pki(dir.path())?;
    let lapi = Lapi::start_with(dir.path(), true)?;
    let key = lapi.bouncer_key("cam-1")?;
    let mut settings = lapi_settings(&lapi, &key);
    settings.lapi_url = format!("https://127.0.0.1:{}", lapi.port);
    settings.ca_pem = Some(pki.ca_pem.clone());
    settings.validate().expect("valid");
    let stream = LapiClient::new(&settings, env!("CARGO_PKG_VERSION"))?.decisions(true).await?;
    assert_eq!(stream.new, None, "no decisions yet");

    let other = make_pki(tempfile::tempdir()?.path())?;
    settings.ca_pem = Some(other.ca_pem);
    let e = LapiClient::new(&settings, env!("CARGO_PKG_VERSION"))?
        .decisions(true)
        .await
        .expect_err("not trusted");
    assert_eq!(e.code(), "unreachable", "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    Ok(())
}

#[derive(Debug, Default)]
struct Watched {
    polls: Mutex<Vec<StreamOutcome>>,
    poll_failures: Mutex<Vec<String>>,
    alerts_sent: Mutex<u32>,
    alerts_failed: Mutex<Vec<String>>,
}

impl CrowdSecObserver for Watched {
    fn polled(&self, outcome: &StreamOutcome, _: usize) {
        self.polls.lock().expect("lock").push(*outcome);
    }
    fn poll_failed(&self, error: &LapiError) {
        self.poll_failures.lock().expect("lock").push(error.to_string());
    }
    fn alert_sent(&self, _: &BlockFacts) {
        *self.alerts_sent.lock().expect("lock") += 1;
    }
    fn alert_failed(&self, _: &BlockFacts, error: &LapiError) {
        self.alerts_failed.lock().expect("lock").push(error.to_string());
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_added_by_cscli_is_enforced_within_a_poll_and_survives_an_outage() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut lapi = Lapi::start(dir.path())?;
    let key = lapi.bouncer_key("cam-1")?;
    let settings = lapi_settings(&lapi, &key);
    let client = Arc::new(LapiClient::new(&settings, env!("CARGO_PKG_VERSION"))?);
    let decisions = Arc::new(RwLock::new(DecisionSet::new(1000)));
    let watched = Arc::new(Watched::default());
    let clock = clock();
    let bouncer = Bouncer::start(
        client.clone(),
        settings.poll_interval(),
        decisions.clone(),
        clock.clone(),
        watched.clone(),
    );
    assert!(wait_until(LIMIT, || !watched.polls.lock().expect("lock").is_empty()).await, "{:?}", watched);
    let policy = AccessPolicy::compile(&AccessControlSettings::default(), &[]);
    let verdict = |addr: &str| admit(&policy, &decisions.read().expect("lock"), ip(addr), clock.monotonic());
    assert_eq!(verdict("127.0.0.9"), Decision::Allow);

    lapi.cscli(&["decisions", "add", "--ip", "127.0.0.9", "--duration", "1h"])?;
    lapi.cscli(&["decisions", "add", "--range", "127.0.1.0/24", "--duration", "1h"])?;
    let added = std::time::Instant::now();
    assert!(
        wait_until(LIMIT, || verdict("127.0.0.9") == Decision::Deny
            && verdict("127.0.1.200") == Decision::Deny)
        .await
    );
    // Within a poll interval (1 s) and the poll itself.
    assert!(added.elapsed() < settings.poll_interval() * 3, "{:?}", added.elapsed());
    assert_eq!(verdict("127.0.0.10"), Decision::Allow);
    let listed = decisions.read().expect("lock").list(clock.timestamp());
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|b| b.origin == "cscli"), "{listed:?}");

    // The LAPI goes away: the bans stay.
    lapi.engine.stop();
    assert!(wait_until(LIMIT, || !watched.poll_failures.lock().expect("lock").is_empty()).await);
    assert_eq!(verdict("127.0.0.9"), Decision::Deny, "the last known set is kept");
    lapi.engine = Lapi::spawn(dir.path())?;
    lapi.wait_ready()?;

    // Deleted on the LAPI: lifted at the next poll.
    lapi.cscli(&["decisions", "delete", "--ip", "127.0.0.9"])?;
    assert!(wait_until(LIMIT, || verdict("127.0.0.9") == Decision::Allow).await);
    assert_eq!(verdict("127.0.1.200"), Decision::Deny, "the range stays");
    bouncer.stop();

    // A wrong key is refused, and named as such (never quoted).
    let wrong = LapiClient::new(&lapi_settings(&lapi, "not-the-key"), env!("CARGO_PKG_VERSION"))?;
    let e = wrong.decisions(true).await.expect_err("refused");
    assert_eq!(e.code(), "refused", "{e}");
    assert!(!e.to_string().contains("not-the-key"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_block_sent_as_an_alert_is_refused_by_another_bouncer() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lapi = Lapi::start(dir.path())?;
    lapi.cscli(&["machines", "add", "cam-1", "--password", "cam-1-secret", "-f", "/dev/null"])?;
    let mut signalling = lapi_settings(&lapi, &lapi.bouncer_key("cam-1")?);
    signalling.machine_id = Some("cam-1".into());
    signalling.machine_password = Some(Secret::new("cam-1-secret"));
    signalling.validate().expect("valid");
    let client = Arc::new(LapiClient::new(&signalling, env!("CARGO_PKG_VERSION"))?);
    let watched = Arc::new(Watched::default());
    let signaller = Signaller::start(client, watched.clone());
    let now = time::OffsetDateTime::now_utc();
    signaller.block(BlockFacts {
        network: "127.0.0.66".parse().expect("net"),
        failures: 6,
        first_failure: now - time::Duration::seconds(40),
        blocked_at: now,
        ban: Duration::from_secs(4 * 3600),
        window: Duration::from_secs(300),
    });
    assert!(
        wait_until(LIMIT, || *watched.alerts_sent.lock().expect("lock") == 1).await,
        "{:?}",
        watched.alerts_failed.lock().expect("lock")
    );

    // Another device that only bounces, with its own key.
    let other =
        LapiClient::new(&lapi_settings(&lapi, &lapi.bouncer_key("cam-2")?), env!("CARGO_PKG_VERSION"))?;
    let stream = other.decisions(true).await?;
    let mut set = DecisionSet::new(100);
    let clock = clock();
    set.apply(&stream, clock.monotonic());
    let policy = AccessPolicy::compile(&AccessControlSettings::default(), &[]);
    assert_eq!(admit(&policy, &set, ip("127.0.0.66"), clock.monotonic()), Decision::Deny, "{stream:?}");
    let ban = &set.list(clock.timestamp())[0];
    assert_eq!(ban.scenario, "portcullis/login-bf");
    let left = ban.until - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::hours(3) && left <= time::Duration::hours(4), "{left}");
    let alerts = lapi.cscli(&["alerts", "list", "-o", "json"])?;
    assert!(alerts.contains("portcullis/login-bf") && alerts.contains("127.0.0.66"), "{alerts}");

    // A wrong machine password is refused at login.
    let mut wrong = signalling.clone();
    wrong.machine_password = Some(Secret::new("wrong"));
    let e = LapiClient::new(&wrong, env!("CARGO_PKG_VERSION"))?.login().await.expect_err("refused");
    assert_eq!(e.code(), "refused", "{e}");
    Ok(())
}

#[test]
fn promtool_accepts_the_exposition() -> Result<()> {
    need("promtool")?;
    let m = Metrics::new(env!("CARGO_PKG_VERSION"), &["metrics", "syslog", "crowdsec"]);
    m.request("https", 200);
    m.request("http", 401);
    m.failed_logins.inc();
    m.certificate_not_after.set(1_900_000_000);
    m.unsaved_changes.set(1);
    SyslogObserver::sent(&m, "tcp://127.0.0.1:514");
    SyslogObserver::dropped(&m, "tcp://127.0.0.1:514", 3);
    CrowdSecObserver::polled(&m, &StreamOutcome { added: 2, ..Default::default() }, 2);
    let text = m.encode();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    use std::io::Write;
    child.stdin.take().context("stdin")?.write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}\n{text}");
    Ok(())
}

/// Serves `metrics.encode()` on a loopback port, as `/metrics` will.
async fn serve_metrics(metrics: Arc<Metrics>) -> Result<(u16, tokio::task::JoinHandle<()>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut req = vec![0u8; 8192];
                let _ = s.read(&mut req).await;
                let body = metrics.encode();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    portcullis_fleet::metrics::CONTENT_TYPE,
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok((port, task))
}

/// GET `path` from 127.0.0.1:`port` (HTTP/1.0); the body.
fn http_get(port: u16, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// The value Prometheus's query API gives for `query` now, if any.
fn prometheus_value(port: u16, query: &str) -> Option<String> {
    let body = http_get(port, &format!("/api/v1/query?query={query}")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_exposition_and_sees_a_block() -> Result<()> {
    need("prometheus")?;
    let dir = tempfile::tempdir()?;
    let metrics = Arc::new(Metrics::new(env!("CARGO_PKG_VERSION"), &["metrics"]));
    let (target, server) = serve_metrics(metrics.clone()).await?;
    let web = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: device\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )?;
    let _prometheus = Engine::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{web}")),
        dir.path().join("prometheus.log"),
    )?;
    // Encoded for the URL: portcullis_clients_blocked{origin="local"}.
    let query = "portcullis_clients_blocked%7Borigin%3D%22local%22%7D";
    let zero =
        wait_until(Duration::from_secs(60), || prometheus_value(web, query).as_deref() == Some("0")).await;
    assert!(
        zero,
        "no scrape: {}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );
    let up = prometheus_value(web, "up%7Bjob%3D%22device%22%7D");
    assert_eq!(up.as_deref(), Some("1"), "the target is up");

    // An attacker is blocked: the next scrape shows it.
    metrics.clients_blocked.get_or_create(&portcullis_fleet::metrics::OriginLabel { origin: "local" }).set(1);
    metrics.failed_logins.inc_by(6);
    assert!(wait_until(LIMIT, || prometheus_value(web, query).as_deref() == Some("1")).await);
    assert_eq!(prometheus_value(web, "portcullis_failed_logins_total").as_deref(), Some("6"));
    server.abort();
    Ok(())
}
