//! Intrusion detection, IP-level access control, the web server logfile and
//! the event log, against the real binary, acting as several clients from
//! different loopback sources.

use std::time::Duration;

use portcullis_testkit::{ADMIN_PASSWORD, TestServer, curl_status, run, wait_until};
use serde_json::{Value, json};

use crate::bin;

/// HTTP status of a request from `source` (0 when the connection is refused or closed).
fn status_from(source: &str, url: &str, credentials: Option<&str>) -> u16 {
    match credentials {
        Some(c) => curl_status(source, url, &["-u", c]),
        None => curl_status(source, url, &[]),
    }
}

/// A server with threshold 5, blocking on, access control on (no match: allow).
fn guarded() -> TestServer {
    let server = TestServer::start(&bin()).expect("start");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    s["intrusion_detection"]["block_ip"] = json!(true);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    let (status, ac) = server.admin("PUT", "/api/v1/access-control", Some(json!({"enabled": true})));
    assert_eq!(status, 200, "{ac}");
    assert_eq!(ac["no_match"], "allow", "omitted fields take their defaults");
    server
}

fn events(server: &TestServer, kind: &str) -> Vec<Value> {
    let (_, body) = server.admin("GET", "/api/v1/events?limit=1000", None);
    body["events"].as_array().expect("events").iter().filter(|e| e["kind"] == kind).cloned().collect()
}

#[test]
fn requests_without_credentials_never_count() {
    let server = guarded();
    let url = server.url("/api/v1/webserver");
    for _ in 0..20 {
        assert_eq!(status_from("127.0.0.2", &url, None), 401);
    }
    assert_eq!(status_from("127.0.0.2", &server.url("/healthz"), None), 200);
    let (_, blocked) = server.admin("GET", "/api/v1/blocked", None);
    assert_eq!(blocked, json!([]));
    assert!(events(&server, "intrusion_alert").is_empty());
    // They are in the logfile, as unauthorized accesses without a user.
    let (_, log) = server.admin("GET", "/api/v1/logfile", None);
    let entry = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["client_ip"] == "127.0.0.2")
        .cloned()
        .expect("entry");
    assert_eq!(entry["count"], 20);
    assert_eq!(entry["user"], Value::Null);
}

#[test]
fn wrong_passwords_block_the_client_on_http_and_https_until_reboot() {
    let server = guarded();
    let api = server.url("/api/v1/webserver");
    let https = server.https_url("/healthz");
    for i in 1..=6 {
        assert_eq!(status_from("127.0.0.2", &api, Some("admin:wrong-guess")), 401, "attempt {i}");
    }
    // Blocked now: refused at the connection, on HTTP and on HTTPS.
    assert_eq!(status_from("127.0.0.2", &server.url("/healthz"), None), 0);
    assert_eq!(status_from("127.0.0.2", &https, None), 0);
    assert_eq!(
        status_from("127.0.0.2", &api, Some(&format!("admin:{ADMIN_PASSWORD}"))),
        0,
        "even the right password"
    );
    // Another client is served.
    assert_eq!(status_from("127.0.0.3", &api, Some(&format!("admin:{ADMIN_PASSWORD}"))), 200);
    assert_eq!(status_from("127.0.0.3", &https, None), 200);
    let (_, blocked) = server.admin("GET", "/api/v1/blocked", None);
    assert_eq!(blocked.as_array().expect("list").len(), 1, "{blocked}");
    assert_eq!(blocked[0]["address"], "127.0.0.2");
    // The alert and the block are in the event log, with the attacker's address.
    let alerts = events(&server, "intrusion_alert");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["actor"]["client_ip"], "127.0.0.2");
    let blocks = events(&server, "client_blocked");
    assert_eq!(blocks.len(), 1);
    // The name the client tried is no one who acted: in the details, never the actor.
    for e in [&alerts[0], &blocks[0]] {
        assert_eq!(e["actor"]["user"], Value::Null, "{e}");
        assert_eq!(e["details"]["attempted_user"], "admin", "{e}");
    }
    // The logfile holds one merged entry for the attack.
    let (_, log) = server.admin("GET", "/api/v1/logfile", None);
    let attack: Vec<&Value> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["client_ip"] == "127.0.0.2")
        .collect();
    assert_eq!(attack.len(), 1, "{log}");
    assert_eq!(attack[0]["count"], 6);
    assert_eq!(attack[0]["authorized"], false);
    assert_eq!(attack[0]["user"], "admin");
    let (_, _, text) = server.admin_text("/api/v1/logfile?format=text");
    assert!(text.contains("127.0.0.2") && text.contains("unauthorized"), "{text}");
    // Reboot lifts the block.
    let (status, _) = server.admin("POST", "/api/v1/reboot", None);
    assert_eq!(status, 200);
    assert_eq!(status_from("127.0.0.2", &server.url("/healthz"), None), 200);
    assert_eq!(server.admin("GET", "/api/v1/blocked", None).1, json!([]));
}

#[test]
fn a_request_with_credentials_to_a_missing_path_is_logged() {
    let server = guarded();
    let admin = format!("admin:{ADMIN_PASSWORD}");
    assert_eq!(status_from("127.0.0.4", &server.url("/api/v1/no-such-thing"), Some(&admin)), 404);
    assert_eq!(status_from("127.0.0.5", &server.url("/no/such/page"), Some("admin:wrong-guess")), 401);
    assert_eq!(status_from("127.0.0.6", &server.url("/no/such/page"), None), 404);
    let (_, log) = server.admin("GET", "/api/v1/logfile", None);
    let entry =
        |ip: &str| log["entries"].as_array().expect("entries").iter().find(|e| e["client_ip"] == ip).cloned();
    let ok = entry("127.0.0.4").unwrap_or_else(|| panic!("the access is logged: {log}"));
    assert_eq!((&ok["user"], &ok["authorized"]), (&json!("admin"), &json!(true)), "{ok}");
    let wrong = entry("127.0.0.5").unwrap_or_else(|| panic!("the attempt is logged: {log}"));
    assert_eq!((&wrong["user"], &wrong["authorized"]), (&json!("admin"), &json!(false)), "{wrong}");
    assert!(entry("127.0.0.6").is_none(), "without credentials, a 404 is no access: {log}");
}

#[test]
fn config_changed_events_record_what_changed_never_a_secret() {
    let server = guarded();
    let changes = events(&server, "config_changed");
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0]["actor"]["user"], "admin");
    assert_eq!(changes[0]["details"]["sections"], json!(["webserver"]), "{}", changes[0]);
    assert_eq!(
        changes[0]["details"]["fields"],
        json!([
            "webserver.intrusion_detection.block_ip",
            "webserver.intrusion_detection.notification_threshold"
        ]),
        "{}",
        changes[0]
    );
    assert_eq!(changes[1]["details"]["sections"], json!(["access_control"]));
    assert_eq!(changes[1]["details"]["fields"], json!(["access_control.enabled"]));
    // A profile with a password, then the password changed: named, never shown.
    let profile = |password: &str| json!({"uri": "sip:alarm@127.0.0.1:5060", "transport": "udp", "username": "cam", "password": password});
    assert_eq!(server.admin("PUT", "/api/v1/profiles/phone/desk", Some(profile("first-sip-secret"))).0, 200);
    assert_eq!(server.admin("PUT", "/api/v1/profiles/phone/desk", Some(profile("second-sip-secret"))).0, 200);
    let changes = events(&server, "config_changed");
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert_eq!(changes[2]["details"]["fields"], json!(["profiles.phone.desk"]), "{}", changes[2]);
    assert_eq!(changes[3]["details"]["fields"], json!(["profiles.phone.desk.password"]), "{}", changes[3]);
    let (_, all) = server.admin("GET", "/api/v1/events?limit=1000", None);
    assert!(!all.to_string().contains("sip-secret"), "{all}");
}

#[test]
fn an_admin_lifts_a_block_and_an_allowed_address_is_never_blocked() {
    let server = guarded();
    let (status, _) = server.admin(
        "PUT",
        "/api/v1/access-control",
        Some(json!({"enabled": true, "rules": [{"kind": "allow", "source": "127.0.0.4"}]})),
    );
    assert_eq!(status, 200);
    let api = server.url("/api/v1/webserver");
    for _ in 0..10 {
        assert_eq!(status_from("127.0.0.4", &api, Some("admin:wrong")), 401);
    }
    for _ in 0..6 {
        assert_eq!(status_from("127.0.0.2", &api, Some("admin:wrong")), 401);
    }
    assert!(!events(&server, "intrusion_alert").is_empty(), "an allowed client still raises alerts");
    assert_eq!(status_from("127.0.0.4", &server.url("/healthz"), None), 200, "allowed: never blocked");
    assert_eq!(status_from("127.0.0.2", &server.url("/healthz"), None), 0);
    let (status, body) = server.admin("DELETE", "/api/v1/blocked?address=127.0.0.4", None);
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.admin("DELETE", "/api/v1/blocked?address=not-an-ip", None);
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "address");
    let (status, _) = server.admin("DELETE", "/api/v1/blocked?address=127.0.0.2", None);
    assert_eq!(status, 200);
    assert_eq!(status_from("127.0.0.2", &server.url("/healthz"), None), 200);
    assert_eq!(events(&server, "client_unblocked").len(), 1);
}

#[test]
fn access_control_rules_refuse_at_the_connection() {
    let server = TestServer::start(&bin()).expect("start");
    let (status, _) = server.admin(
        "PUT",
        "/api/v1/access-control",
        Some(json!({"enabled": true, "rules": [{"kind": "deny", "source": "127.0.0.5"}, {"kind": "inactive", "source": "127.0.0.6"}]})),
    );
    assert_eq!(status, 200);
    // Refused before TLS: no certificate is ever sent.
    let connect = format!("127.0.0.1:{}", server.https_port);
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-bind", "127.0.0.5:0"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("BEGIN CERTIFICATE"), "{text}");
    assert_eq!(status_from("127.0.0.5", &server.url("/healthz"), None), 0);
    assert_eq!(status_from("127.0.0.6", &server.url("/healthz"), None), 200, "inactive rules do nothing");
    // Invalid rules name the field.
    let (status, err) = server.admin(
        "PUT",
        "/api/v1/access-control",
        Some(json!({"rules": [{"kind": "deny", "source": "10.0.0.1/8"}]})),
    );
    assert_eq!(status, 400);
    assert_eq!(err["error"]["field"], "rules[0].source", "{err}");
    // Status shows the section, and temporary rules do not survive a reboot.
    let (_, st) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(st["changed_sections"], json!(["access_control"]));
    server.admin(
        "PUT",
        "/api/v1/access-control",
        Some(json!({"enabled": true, "rules": [{"kind": "temporary_deny", "source": "127.0.0.7"}]})),
    );
    assert_eq!(status_from("127.0.0.7", &server.url("/healthz"), None), 0);
    server.admin("POST", "/api/v1/config/store", None);
    server.admin("POST", "/api/v1/reboot", None);
    assert_eq!(status_from("127.0.0.7", &server.url("/healthz"), None), 200);
    let (_, ac) = server.admin("GET", "/api/v1/access-control", None);
    assert_eq!(ac["rules"], json!([]));
}

#[test]
fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let server = guarded();
    server.admin(
        "PUT",
        "/api/v1/access-control",
        Some(json!({"enabled": true, "trusted_proxies": ["127.0.0.8"]})),
    );
    let api = server.url("/api/v1/webserver");
    let via_proxy = |forwarded: &str, creds: &str| {
        curl_status("127.0.0.8", &api, &["-H", &format!("X-Forwarded-For: {forwarded}"), "-u", creds])
    };
    for _ in 0..6 {
        assert_eq!(via_proxy("198.51.100.7", "admin:wrong"), 401);
    }
    // The client behind the proxy is blocked: 403 through the proxy; the proxy itself is not.
    assert_eq!(via_proxy("198.51.100.7", &format!("admin:{ADMIN_PASSWORD}")), 403);
    assert_eq!(via_proxy("198.51.100.8", &format!("admin:{ADMIN_PASSWORD}")), 200);
    let (_, blocked) = server.admin("GET", "/api/v1/blocked", None);
    assert_eq!(blocked[0]["address"], "198.51.100.7");
    // From an untrusted peer the header is ignored: failures count for the peer.
    for _ in 0..6 {
        assert_eq!(
            curl_status("127.0.0.9", &api, &["-H", "X-Forwarded-For: 203.0.113.1", "-u", "admin:wrong"]),
            401
        );
    }
    let (_, blocked) = server.admin("GET", "/api/v1/blocked", None);
    let addresses: Vec<&str> =
        blocked.as_array().expect("list").iter().filter_map(|b| b["address"].as_str()).collect();
    assert!(addresses.contains(&"127.0.0.9") && !addresses.contains(&"203.0.113.1"), "{addresses:?}");
}

#[test]
fn logfile_and_events_survive_a_restart() {
    let mut server = guarded();
    assert_eq!(status_from("127.0.0.2", &server.url("/api/v1/webserver"), Some("admin:wrong")), 401);
    server.admin("POST", "/api/v1/config/store", None);
    let log_path = server.data_dir().join("logfile.json");
    assert!(wait_until(Duration::from_secs(10), || std::fs::read_to_string(&log_path)
        .is_ok_and(|t| t.contains("127.0.0.2"))));
    assert_eq!(server.terminate(), Some(0));
    server.restart().expect("restart");
    let (_, log) = server.admin("GET", "/api/v1/logfile", None);
    assert!(log.to_string().contains("127.0.0.2"), "{log}");
    let stored = events(&server, "config_stored");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["actor"]["user"], "admin");
    assert_eq!(events(&server, "startup").len(), 2);
}

#[test]
fn hydra_is_blocked_at_the_threshold_while_a_legitimate_client_is_served() {
    if run("sh", &["-c", "command -v hydra"]).0 != 0 {
        panic!("hydra is not installed: run scripts/install-test-deps");
    }
    let mut server = guarded();
    // The test's own admin requests come from another source than the attacker.
    server.source = "127.0.0.3".parse().expect("ip");
    let dir = tempfile::tempdir().expect("tempdir");
    let words = dir.path().join("words.txt");
    let mut list: Vec<String> = (0..40).map(|i| format!("guess-{i}")).collect();
    list.push(ADMIN_PASSWORD.to_string());
    std::fs::write(&words, list.join("\n")).expect("write");
    let legit_url = server.url("/api/v1/webserver");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let legit = std::thread::spawn(move || {
        let mut statuses = Vec::new();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            statuses.push(status_from("127.0.0.3", &legit_url, Some(&format!("admin:{ADMIN_PASSWORD}"))));
        }
        statuses
    });
    let (out, err) = crate::hydra_http_get(server.http_ports[0], &words, "/api/v1/webserver");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = legit.join().expect("legit client");
    assert!(
        !out.contains(&format!("password: {ADMIN_PASSWORD}")),
        "hydra must not find the password:\n{out}\n{err}"
    );
    let (_, blocked) = server.admin("GET", "/api/v1/blocked", None);
    assert_eq!(blocked[0]["address"], "127.0.0.1", "{blocked}");
    assert!(!statuses.is_empty() && statuses.iter().all(|s| *s == 200), "legitimate client: {statuses:?}");
    // Hydra got at most a few attempts past the threshold (its parallel connections in flight).
    let (_, log) = server.admin("GET", "/api/v1/logfile", None);
    let attempts: u64 = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["client_ip"] == "127.0.0.1" && e["authorized"] == false)
        .map(|e| e["count"].as_u64().unwrap_or(0))
        .sum();
    assert!((6..=12).contains(&attempts), "attempts before the block: {attempts}");
}
