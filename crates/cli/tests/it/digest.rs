//! HTTP Digest (RFC 7616) against the real binary: curl (SHA-256), a
//! hand-computed MD5 response for legacy clients, replays, and failures
//! counted by intrusion detection.

use md5::{Digest, Md5};
use portcullis_testkit::{ADMIN_PASSWORD, TestServer, run};
use serde_json::json;

use crate::bin;

fn curl_digest(server: &TestServer, source: &str, credentials: &str) -> String {
    let url = server.url("/api/v1/webserver?x=1");
    run(
        "curl",
        &[
            "-s",
            "--interface",
            source,
            "--digest",
            "-u",
            credentials,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ],
    )
    .1
}

fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
    let start = challenge.find(&format!("{name}=\"")).expect("param") + name.len() + 2;
    let end = start + challenge[start..].find('"').expect("closing quote");
    &challenge[start..end]
}

#[test]
fn digest_is_off_by_default_and_works_when_switched_on() {
    let server = TestServer::start(&bin()).expect("start");
    // Off: only Basic is offered.
    let resp = server.client().get(server.url("/api/v1/webserver")).send().expect("send");
    let challenges: Vec<_> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect();
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert_eq!(curl_digest(&server, "127.0.0.1", &format!("admin:{ADMIN_PASSWORD}")), "401");
    // On: the admin's secret is derived at its next password login (the test client uses Basic).
    let (status, body) = server.admin("PUT", "/api/v1/authentication", Some(json!({"digest": true})));
    assert_eq!(status, 200, "{body}");
    server.admin("GET", "/api/v1/webserver", None);
    let users = std::fs::read_to_string(server.data_dir().join("users.json")).expect("users");
    assert!(users.contains("ha1_sha256"), "{users}");
    assert_eq!(
        curl_digest(&server, "127.0.0.1", &format!("admin:{ADMIN_PASSWORD}")),
        "200",
        "curl picks SHA-256"
    );
    // Challenges: Basic first (for tools that read one), then SHA-256, then MD5.
    let resp = server.client().get(server.url("/api/v1/webserver?x=1")).send().expect("send");
    let challenges: Vec<String> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect();
    assert_eq!(challenges.len(), 3, "{challenges:?}");
    assert!(challenges[0].starts_with("Basic"));
    assert!(challenges[1].contains("algorithm=SHA-256") && challenges[2].contains("algorithm=MD5"));
    // A legacy client with MD5, computed by hand.
    let md5 = |s: String| hex::encode(Md5::digest(s.as_bytes()));
    let nonce = param(&challenges[2], "nonce").to_string();
    let uri = "/api/v1/webserver?x=1";
    let ha1 = md5(format!("admin:portcullis:{ADMIN_PASSWORD}"));
    let ha2 = md5(format!("GET:{uri}"));
    let header = |nc: &str| {
        let response = md5(format!("{ha1}:{nonce}:{nc}:0a4f113b:auth:{ha2}"));
        format!(
            "Digest username=\"admin\", realm=\"portcullis\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"0a4f113b\", response=\"{response}\""
        )
    };
    let send = |h: &str| {
        server
            .client()
            .get(server.url(uri))
            .header("authorization", h)
            .send()
            .expect("send")
            .status()
            .as_u16()
    };
    assert_eq!(send(&header("00000001")), 200);
    assert_eq!(send(&header("00000001")), 401, "a replayed nonce count is refused");
    assert_eq!(send(&header("00000002")), 200);
    // Off again: the secrets are gone from disk.
    let (status, _) = server.admin("PUT", "/api/v1/authentication", Some(json!({"digest": false})));
    assert_eq!(status, 200);
    let users = std::fs::read_to_string(server.data_dir().join("users.json")).expect("users");
    assert!(!users.contains("ha1_"), "{users}");
}

#[test]
fn wrong_digest_responses_count_as_failed_attempts() {
    let server = TestServer::start(&bin()).expect("start");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    s["intrusion_detection"]["block_ip"] = json!(true);
    server.admin("PUT", "/api/v1/webserver", Some(s));
    server.admin("PUT", "/api/v1/access-control", Some(json!({"enabled": true})));
    server.admin("PUT", "/api/v1/authentication", Some(json!({"digest": true})));
    for _ in 0..6 {
        assert_eq!(curl_digest(&server, "127.0.0.2", "admin:wrong-password"), "401");
    }
    assert_eq!(curl_digest(&server, "127.0.0.2", &format!("admin:{ADMIN_PASSWORD}")), "000", "blocked");
    let (_, blocked) = server.admin("GET", "/api/v1/blocked", None);
    assert_eq!(blocked[0]["address"], "127.0.0.2");
}
