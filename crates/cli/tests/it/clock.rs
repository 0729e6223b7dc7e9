//! Wall-clock steps, as a device lives them (issue 17): a first start with
//! the clock still in 1970, NTP setting it later, and NTP stepping it back
//! while the server runs. The wall clock is faked with libfaketime (Debian
//! `libfaketime`); its monotonic clock is left alone (`DONT_FAKE_MONOTONIC`),
//! as NTP leaves `CLOCK_MONOTONIC` alone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_testkit::{ADMIN_PASSWORD, Options, TestServer, curl_status, openssl, wait_until};
use serde_json::{Value, json};

use crate::{bin, digest_md5_header, digest_nonce};

/// libfaketime's preload library.
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists());
    found.unwrap_or_else(|| panic!("libfaketime is not installed: run scripts/install-test-deps"))
}

/// Environment that fakes the wall clock to what `timestamp_file` says
/// (re-read at every clock read, so a test steps the clock by rewriting it);
/// the monotonic clock stays real.
pub(crate) fn faked_wall_clock(timestamp_file: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), libfaketime().display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), timestamp_file.display().to_string()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}

/// Sets the faked wall clock: `@1970-01-02 00:00:00` (a start time that then
/// runs on), `-1h` (an offset from the real time), `+0`.
fn set_clock(timestamp_file: &Path, spec: &str) {
    std::fs::write(timestamp_file, format!("{spec}\n")).expect("timestamp file");
}

/// The PEM certificate the HTTPS port serves now.
fn served_certificate(port: u16) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = text.find("-----BEGIN CERTIFICATE-----").expect("a certificate");
    let end = text.find("-----END CERTIFICATE-----").expect("end") + "-----END CERTIFICATE-----".len();
    text[start..end].to_string()
}

/// Whether `pem` is valid now by the real clock (`openssl x509 -checkend 0`).
fn valid_now(pem: &str) -> bool {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-checkend", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("openssl x509");
    child.stdin.take().expect("stdin").write_all(pem.as_bytes()).expect("write");
    child.wait().expect("wait").success()
}

/// An ECDSA certificate and key made by openssl with the clock at
/// 1970-01-02, valid ten years: what earlier firmware made at a first start
/// with an unset clock. One PEM file, as `certs/factory.pem` holds it.
fn factory_pem_made_in_1970(dir: &Path) -> String {
    let stamp = dir.join("openssl-clock");
    set_clock(&stamp, "@1970-01-02 00:00:00");
    let (cert, key) = (dir.join("old.pem"), dir.join("old.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "3650",
        ])
        .args(["-subj", "/O=portcullis factory certificate/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .envs(faked_wall_clock(&stamp))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl req");
    assert!(status.success());
    let cert = std::fs::read_to_string(cert).expect("cert");
    let dates = openssl(&["x509", "-noout", "-enddate", "-in", &dir.join("old.pem").display().to_string()])
        .expect("dates");
    assert!(dates.contains("1979"), "{dates}");
    format!("{cert}{}", std::fs::read_to_string(key).expect("key"))
}

#[test]
fn a_first_start_with_the_clock_in_1970_gives_a_certificate_valid_once_the_clock_is_set() {
    let work = tempfile::tempdir().expect("tempdir");
    let stamp = work.path().join("clock");
    set_clock(&stamp, "@1970-01-02 00:00:00");
    let options = Options { env: faked_wall_clock(&stamp), ..Default::default() };
    let mut server = TestServer::start_with(&bin(), options).expect("start in 1970");
    let made_in_1970 = served_certificate(server.https_port);
    server.kill();
    // NTP has set the clock by the next start.
    server.options.env.clear();
    server.restart().expect("start");
    let served = served_certificate(server.https_port);
    assert_eq!(served, made_in_1970, "the device keeps its identity");
    assert!(valid_now(&served), "{served}");
    let (_, view) = server.admin("GET", "/api/v1/certificate", None);
    assert_eq!(view["certificate"]["not_before"], "1970-01-01T00:00:00Z");
    assert_eq!(view["certificate"]["not_after"], "9999-12-31T23:59:59Z");
}

#[test]
fn an_expired_factory_certificate_of_earlier_firmware_is_made_again() {
    let work = tempfile::tempdir().expect("tempdir");
    let old = factory_pem_made_in_1970(work.path());
    assert!(!valid_now(&old));

    // At start: a data folder holding it, the clock set.
    let mut server = TestServer::start(&bin()).expect("start");
    server.kill();
    std::fs::write(server.data_dir().join("certs/factory.pem"), &old).expect("replace");
    server.restart().expect("restart");
    let served = served_certificate(server.https_port);
    assert!(valid_now(&served), "a good certificate is served, not the expired one");

    // While running: started with the clock in 1970 (then the old one is
    // not expired, and is served), the clock is set, and within a check
    // interval a good one is served.
    let stamp = work.path().join("clock");
    set_clock(&stamp, "@1970-01-02 00:00:00");
    let options = Options {
        env: faked_wall_clock(&stamp),
        extra_args: vec!["--certificate-check-seconds".into(), "1".into()],
        ..Default::default()
    };
    let mut server = TestServer::start_with(&bin(), options).expect("start in 1970");
    server.kill();
    std::fs::write(server.data_dir().join("certs/factory.pem"), &old).expect("replace");
    server.restart().expect("restart in 1970");
    assert!(!valid_now(&served_certificate(server.https_port)), "the old one, while the clock says 1970");
    set_clock(&stamp, "+0");
    assert!(
        wait_until(Duration::from_secs(15), || valid_now(&served_certificate(server.https_port))),
        "a good certificate once the clock is set"
    );
    let (_, body) = server.admin("GET", "/api/v1/events?limit=1000", None);
    let changed: Vec<&Value> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "certificate_changed")
        .collect();
    assert_eq!(changed.len(), 1, "{body}");
}

#[test]
fn a_wall_clock_stepped_back_while_running_still_alerts() {
    let work = tempfile::tempdir().expect("tempdir");
    let stamp = work.path().join("clock");
    set_clock(&stamp, "+0");
    let options = Options { env: faked_wall_clock(&stamp), ..Default::default() };
    let server = TestServer::start_with(&bin(), options).expect("start");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    s["intrusion_detection"]["deadtime_minutes"] = json!(0);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    let url = server.url("/api/v1/webserver");
    let alerts_from = |client: &str| -> Vec<u64> {
        let (_, body) = server.admin("GET", "/api/v1/events?limit=1000", None);
        body["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["kind"] == "intrusion_alert" && e["actor"]["client_ip"] == client)
            .map(|e| e["details"]["count"].as_u64().expect("count"))
            .collect()
    };
    for _ in 0..6 {
        assert_eq!(curl_status("127.0.0.2", &url, &["-u", "admin:wrong-guess"]), 401);
    }
    assert_eq!(alerts_from("127.0.0.2"), [6]);
    // NTP steps the wall clock back an hour; a new attacker comes.
    set_clock(&stamp, "-1h");
    for _ in 0..7 {
        assert_eq!(curl_status("127.0.0.3", &url, &["-u", "admin:wrong-guess"]), 401);
    }
    assert_eq!(alerts_from("127.0.0.3"), [6, 7], "deadtime 0: every failure past the threshold alerts");
    // The log shows the stepped clock (what the device's clock says), and one entry for the attack.
    let (_, log) = server.admin("GET", "/api/v1/logfile", None);
    let entries: Vec<&Value> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["client_ip"] == "127.0.0.3")
        .collect();
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(entries[0]["count"], 7);
}

#[test]
fn digest_nonces_outlive_a_wall_clock_step_forward() {
    let work = tempfile::tempdir().expect("tempdir");
    let stamp = work.path().join("clock");
    set_clock(&stamp, "+0");
    let options = Options { env: faked_wall_clock(&stamp), ..Default::default() };
    let server = TestServer::start_with(&bin(), options).expect("start");
    assert_eq!(server.admin("PUT", "/api/v1/authentication", Some(json!({"digest": true}))).0, 200);
    server.admin("GET", "/api/v1/webserver", None); // derives the admin's Digest secret
    let uri = "/api/v1/webserver";
    let nonce = digest_nonce(&server.client(), &server.url(uri));
    // NTP steps the clock forward 20 minutes, a second after the challenge:
    // the nonce is a second old, not 20 minutes (nonces live 5).
    set_clock(&stamp, "+20m");
    let header = digest_md5_header(&nonce, uri, 1, ADMIN_PASSWORD);
    let resp = server.client().get(server.url(uri)).header("authorization", header).send().expect("send");
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.headers().get_all("www-authenticate"));
}
