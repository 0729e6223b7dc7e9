//! ACME against Debian's pebble, from the real binary (http-01 and
//! tls-alpn-01 answered by the server's own listeners, renewal by itself),
//! and the expiry watch with an injected clock (in-process server).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use portcullis_testkit::{Options, TestServer, free_port, wait_until};
use serde_json::{Value, json};

use crate::bin;

struct Pebble {
    children: Vec<Child>,
    _dir: tempfile::TempDir,
    directory_url: String,
    ca_pem: String,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// pebble validating on `http_port` / `tls_port` (the server's), issuing
/// certificates valid `validity` seconds.
fn pebble(http_port: u16, tls_port: u16, validity: u64) -> Pebble {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n).display().to_string();
    // pebble's own HTTPS certificate, from a test CA the server is told to trust.
    let ca = portcullis_testkit::TestCa::new(&dir.path().join("ca")).expect("ca");
    let (chain, key) =
        ca.issue("localhost", "pebble", &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]).expect("issue");
    let (listen, management, dns, dns_management) = (free_port(), free_port(), free_port(), free_port());
    let config = json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{listen}"), "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": chain, "privateKey": key, "httpPort": http_port, "tlsPort": tls_port,
        "ocspResponderURL": "", "externalAccountBindingRequired": false, "certificateValidityPeriod": validity,
    }});
    std::fs::write(p("pebble.json"), serde_json::to_vec(&config).expect("json")).expect("write");
    let log = |n: &str| Stdio::from(std::fs::File::create(dir.path().join(n)).expect("log"));
    let challtestsrv = Command::new("pebble-challtestsrv")
        .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", &format!("127.0.0.1:{dns}")])
        .args([
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{dns_management}"),
        ])
        .stdout(log("dns.log"))
        .stderr(log("dns.err"))
        .spawn()
        .expect("pebble-challtestsrv (apt-get install pebble)");
    let server = Command::new("pebble")
        .args(["-config", &p("pebble.json"), "-dnsserver", &format!("127.0.0.1:{dns}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(log("pebble.log"))
        .stderr(log("pebble.err"))
        .spawn()
        .expect("pebble");
    let ca_pem = std::fs::read_to_string(ca.path("root.pem")).expect("ca");
    let pebble = Pebble {
        children: vec![challtestsrv, server],
        _dir: dir,
        directory_url: format!("https://localhost:{listen}/dir"),
        ca_pem,
    };
    assert!(
        wait_until(Duration::from_secs(20), || port_open(listen) && port_open(dns_management)),
        "pebble did not start"
    );
    pebble
}

fn certificate(server: &TestServer) -> Value {
    server.admin("GET", "/api/v1/certificate", None).1
}

#[test]
fn enrol_with_http01_and_tls_alpn01_then_renew_by_itself() {
    let options =
        Options { extra_args: vec!["--certificate-check-seconds".into(), "1".into()], ..Default::default() };
    let server = TestServer::start_with(&bin(), options).expect("start");
    let pebble = pebble(server.http_ports[0], server.https_port, 30);
    let mut settings = json!({"enabled": false, "directory_url": pebble.directory_url, "contact": ["ops@example.com"],
        "identifiers": ["acme.portcullis.test"], "challenge": "http-01", "key_type": "ecdsa-p256", "ca_bundle_pem": pebble.ca_pem});
    let (status, view) = server.admin("PUT", "/api/v1/certificate/acme", Some(settings.clone()));
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["settings"]["contact"], json!(["mailto:ops@example.com"]));
    let (status, st) = server.admin("POST", "/api/v1/certificate/acme/enrol", None);
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["managed"], true);
    let cert = certificate(&server);
    assert!(cert["certificate"]["issuer"].as_str().expect("issuer").contains("Pebble"), "{cert}");
    assert_eq!(cert["certificate"]["subject_alt_names"], json!(["DNS:acme.portcullis.test"]));
    // tls-alpn-01, answered by the HTTPS listener itself.
    settings["challenge"] = json!("tls-alpn-01");
    settings["enabled"] = json!(true);
    assert_eq!(server.admin("PUT", "/api/v1/certificate/acme", Some(settings)).0, 200);
    let before = certificate(&server)["certificate"]["fingerprint_sha256"].clone();
    let (status, st) = server.admin("POST", "/api/v1/certificate/acme/enrol", None);
    assert_eq!(status, 200, "{st}");
    let issued = certificate(&server)["certificate"]["fingerprint_sha256"].clone();
    assert_ne!(issued, before);
    // 30-second certificates: renewed by itself at two thirds, without an operator.
    assert!(
        wait_until(Duration::from_secs(45), || certificate(&server)["certificate"]["fingerprint_sha256"]
            != issued),
        "not renewed: {}",
        server.admin("GET", "/api/v1/certificate/acme", None).1
    );
    // The CA goes away: the error is visible, the certificate stays.
    drop(pebble);
    let serving = certificate(&server)["certificate"]["fingerprint_sha256"].clone();
    let (status, err) = server.admin("POST", "/api/v1/certificate/acme/enrol", None);
    assert_eq!(status, 502, "{err}");
    let (_, view) = server.admin("GET", "/api/v1/certificate/acme", None);
    assert!(view["status"]["last_error"].is_string(), "{view}");
    assert!(view["status"]["failures"].as_u64().is_some_and(|f| f >= 1));
    assert_eq!(certificate(&server)["certificate"]["fingerprint_sha256"], serving);
    let (_, events) = server.admin("GET", "/api/v1/events?limit=1000", None);
    assert!(events.to_string().contains("acme_failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_watch_fires_at_each_threshold() {
    use portcullis_core::ManualClock;
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let dir = tempfile::tempdir().expect("tempdir");
    let (http, https) = (free_port(), free_port());
    let server = portcullis::ServerBuilder::new(dir.path().join("data"))
        .port_overrides(portcullis::PortOverrides { http_ports: Some(vec![http]), https_port: Some(https) })
        .admin_password(Some("expiry-password".into()))
        .bind_addresses(vec!["127.0.0.1".parse().expect("ip")])
        .clock(clock.clone())
        .certificate_checks(Duration::from_secs(3600), Duration::from_millis(20))
        .start()
        .await
        .expect("start");
    let rt = server.runtime().clone();
    // A certificate valid 40 days from the injected now.
    let mut req = portcullis_cert::GenerateRequest::new("expiry.portcullis.test");
    req.key_type = portcullis_cert::KeyType::EcdsaP256;
    req.validity_days = 40;
    rt.change_certificate(portcullis::runtime::CertificateChange::Generate(req), &Default::default())
        .await
        .expect("generate");
    let stages = |rt: &portcullis::Runtime| -> Vec<String> {
        rt.security()
            .events(0, 1000)
            .iter()
            .filter(|e| e.kind == portcullis_core::events::EventKind::CertificateExpiring)
            .map(|e| e.details["stage"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let wait_for = |n: usize| {
        let rt = rt.clone();
        async move {
            for _ in 0..250 {
                if stages(&rt).len() >= n {
                    return stages(&rt);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stages(&rt)
        }
    };
    clock.advance(time::Duration::days(11)); // 29 days left
    assert_eq!(wait_for(1).await, vec!["days30"]);
    clock.advance(time::Duration::days(23)); // 6 days left
    assert_eq!(wait_for(2).await, vec!["days30", "days7"]);
    clock.advance(time::Duration::days(5) + time::Duration::hours(12)); // half a day left
    assert_eq!(wait_for(3).await, vec!["days30", "days7", "days1"]);
    clock.advance(time::Duration::days(1));
    assert_eq!(wait_for(4).await, vec!["days30", "days7", "days1", "expired"]);
    // Each stage once.
    clock.advance(time::Duration::days(1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(stages(&rt).len(), 4);
    server.shutdown().await;
}

#[test]
fn configured_offline_the_server_enrols_by_itself() {
    let options =
        Options { extra_args: vec!["--certificate-check-seconds".into(), "1".into()], ..Default::default() };
    let mut server = TestServer::start_with(&bin(), options).expect("start");
    let pebble = pebble(server.http_ports[0], server.https_port, 3600);
    server.kill();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pebble.ca_pem).expect("write");
    let data = server.data_dir().display().to_string();
    let pcs = |args: &[&str]| portcullis_testkit::run(bin().to_str().expect("utf8"), args);
    let (code, _, err) =
        pcs(&["cert", "acme", "--directory-url", "http://insecure.example/dir", "--data-dir", &data]);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, out, err) = pcs(&[
        "cert",
        "acme",
        "--enabled",
        "true",
        "--directory-url",
        &pebble.directory_url,
        "--identifier",
        "auto.portcullis.test",
        "--contact",
        "ops@example.com",
        "--challenge",
        "http-01",
        "--ca-bundle",
        ca.to_str().expect("utf8"),
        "--data-dir",
        &data,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mailto:ops@example.com"), "{out}");
    server.restart().expect("restart");
    assert!(
        wait_until(Duration::from_secs(30), || certificate(&server)["certificate"]["issuer"]
            .as_str()
            .is_some_and(|i| i.contains("Pebble"))),
        "no enrolment: {}",
        server.admin("GET", "/api/v1/certificate/acme", None).1
    );
    let (_, view) = server.admin("GET", "/api/v1/certificate/acme", None);
    assert_eq!(view["status"]["managed"], true);
    assert!(view["status"]["next_renewal"].is_string());
}

/// `openssl s_client` to `127.0.0.1:port` offering `alpn` for `name`, sending
/// an HTTP request once connected; its exit code, and stdout and stderr
/// together.
fn s_client_alpn(port: u16, name: &str, alpn: &str) -> (i32, String) {
    let connect = format!("127.0.0.1:{port}");
    let script = format!(
        "printf 'GET /healthz HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n' | openssl s_client -connect {connect} -servername {name} -alpn {alpn} -ign_eof 2>&1"
    );
    let (code, out, _) = portcullis_testkit::run("timeout", &["10", "sh", "-c", &script]);
    (code, out)
}

/// With no tls-alpn-01 challenge pending, a handshake offering only
/// `acme-tls/1` is refused (no_application_protocol) and no HTTP is served.
#[test]
fn acme_tls_alpn_without_a_pending_challenge_is_refused() {
    let server = TestServer::start(&bin()).expect("start");
    let (code, out) = s_client_alpn(server.https_port, "localhost", "acme-tls/1");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("no application protocol"), "refused with no_application_protocol: {out}");
    assert!(!out.contains("HTTP/1.1"), "no HTTP answer: {out}");
    let (code, out) = s_client_alpn(server.https_port, "localhost", "http/1.1");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("HTTP/1.1 200"), "HTTP over the usual ALPN: {out}");
}

/// While a challenge is pending, `acme-tls/1` gets the challenge certificate
/// for its name only, and the connection never carries HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_tls_connection_never_carries_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let https_port = free_port();
    let server = portcullis::ServerBuilder::new(dir.path().join("data"))
        .port_overrides(portcullis::PortOverrides {
            http_ports: Some(vec![free_port()]),
            https_port: Some(https_port),
        })
        .admin_password(Some(portcullis_testkit::ADMIN_PASSWORD.into()))
        .bind_addresses(vec!["127.0.0.1".parse().expect("ip")])
        .start()
        .await
        .expect("start");
    let mut req = portcullis_cert::GenerateRequest::new("challenge.portcullis.test");
    req.key_type = portcullis_cert::KeyType::EcdsaP256;
    let g =
        portcullis_cert::generate(&req, time::OffsetDateTime::now_utc(), &mut rand::rng()).expect("generate");
    let material =
        portcullis_cert::parse_stored(g.chain_pem.as_bytes(), g.key_pem.as_bytes()).expect("material");
    let resolver = server.runtime().certs().resolver.clone();
    resolver.set_challenge("challenge.portcullis.test", material.certified_key().expect("key"));
    let results = tokio::task::spawn_blocking(move || {
        [
            s_client_alpn(https_port, "challenge.portcullis.test", "acme-tls/1"),
            s_client_alpn(https_port, "other.portcullis.test", "acme-tls/1"),
            s_client_alpn(https_port, "localhost", "http/1.1"),
        ]
    })
    .await
    .expect("clients");
    let (_, validator) = &results[0];
    assert!(validator.contains("challenge.portcullis.test"), "the challenge certificate: {validator}");
    assert!(validator.contains("acme-tls/1"), "{validator}");
    assert!(!validator.contains("HTTP/1.1"), "no HTTP on an acme-tls/1 connection: {validator}");
    let (code, other) = &results[1];
    assert!(*code != 0 && !other.contains("HTTP/1.1"), "no challenge for that name: {other}");
    let (code, browser) = &results[2];
    assert!(*code == 0 && browser.contains("HTTP/1.1 200"), "HTTP still served meanwhile: {browser}");
    server.shutdown().await;
}
