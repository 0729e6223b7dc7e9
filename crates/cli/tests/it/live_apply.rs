//! Safe live apply (issue 6): listener changes without reboot, provisional
//! changes confirmed through the new configuration or rolled back by
//! themselves, HTTP → HTTPS redirect and HSTS.

use std::time::Duration;

use portcullis_testkit::{ADMIN_PASSWORD, TestCa, TestServer, free_port, raw_get, run, wait_until};
use serde_json::{Value, json};

use crate::bin;

/// A request as admin to a given port (plain HTTP), from a given source.
fn admin_at(server: &TestServer, port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::blocking::Client::builder()
        .local_address(server.source)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut req = client
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
            format!("http://127.0.0.1:{port}{path}"),
        )
        .basic_auth("admin", Some(ADMIN_PASSWORD));
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send() {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

fn events(server: &TestServer, port: u16, kind: &str) -> Vec<Value> {
    let (_, body) = admin_at(server, port, "GET", "/api/v1/events?limit=1000", None);
    body["events"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["kind"] == kind).cloned().collect())
        .unwrap_or_default()
}

#[test]
fn moving_the_port_in_use_needs_confirmation_from_the_new_port() {
    let server = TestServer::start(&bin()).expect("start");
    let old = server.http_ports[0];
    let new = free_port();
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["http_ports"] = json!([new]);
    let (status, body) = server.admin("PUT", "/api/v1/webserver", Some(s.clone()));
    // The answer says the change is provisional, until when, and how to confirm it.
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["provisional"], true);
    assert!(
        body["deadline"].is_string() && body["reason"].as_str().expect("reason").contains(&old.to_string())
    );
    assert_eq!(body["confirm"], "POST /api/v1/config/confirm");
    assert_eq!(body["settings"]["http_ports"], json!([new]));
    // Both answer while the change is provisional.
    assert!(raw_get(new, "/healthz").expect("new port").starts_with("HTTP/1.1 200"));
    assert!(raw_get(old, "/healthz").expect("old port stays").starts_with("HTTP/1.1 200"));
    let (_, status) = admin_at(&server, old, "GET", "/api/v1/config/status", None);
    assert!(status["pending"]["deadline"].is_string(), "{status}");
    // Store, another Set and a confirmation through the old port are refused.
    let (code, err) = admin_at(&server, old, "POST", "/api/v1/config/store", None);
    assert_eq!((code, err["error"]["code"].as_str()), (409, Some("change_unconfirmed")));
    let (code, err) = admin_at(&server, old, "PUT", "/api/v1/access-control", Some(json!({"enabled": true})));
    assert_eq!((code, err["error"]["code"].as_str()), (409, Some("change_unconfirmed")));
    let (code, err) = admin_at(&server, old, "POST", "/api/v1/config/confirm", None);
    assert_eq!(code, 409, "{err}");
    assert_eq!(err["error"]["code"], "confirm_from_new_address");
    assert!(err["error"]["message"].as_str().expect("message").contains(&new.to_string()));
    // Confirmed through the new port: the old one closes, the change stays and can be stored.
    let (code, status) = admin_at(&server, new, "POST", "/api/v1/config/confirm", None);
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["pending"], Value::Null);
    assert!(
        wait_until(Duration::from_secs(15), || raw_get(old, "/healthz").is_none()),
        "old port closes after confirm"
    );
    let (code, _) = admin_at(&server, new, "POST", "/api/v1/config/store", None);
    assert_eq!(code, 200);
    assert_eq!(events(&server, new, "config_confirmed").len(), 1);
}

#[test]
fn an_unconfirmed_change_rolls_back_by_itself() {
    let server = TestServer::start(&bin()).expect("start");
    let old = server.http_ports[0];
    let new = free_port();
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["http_ports"] = json!([new]);
    s["confirm_timeout_seconds"] = json!(30);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 202);
    assert!(raw_get(new, "/healthz").is_some());
    // Nobody confirms: after the grace period the old configuration is back.
    assert!(
        wait_until(Duration::from_secs(45), || raw_get(new, "/healthz").is_none()),
        "the new port closes when the change rolls back"
    );
    assert!(raw_get(old, "/healthz").expect("old port").starts_with("HTTP/1.1 200"));
    let (_, settings) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(settings["http_ports"], json!([old]));
    let rolled = events(&server, old, "config_rolled_back");
    assert_eq!(rolled.len(), 1, "the event log says rolled back");

    // Access rules that deny the requester are provisional too; confirmed
    // from an address they allow, they stay.
    let mut from_allowed = TestServer::start(&bin()).expect("start");
    from_allowed.source = "127.0.0.3".parse().expect("ip");
    let rules =
        json!({"enabled": true, "no_match": "deny", "rules": [{"kind": "allow", "source": "127.0.0.3"}]});
    let (status, _) = from_allowed.request_as(
        "admin",
        ADMIN_PASSWORD,
        "PUT",
        "/api/v1/access-control",
        Some(rules.clone()),
    );
    assert_eq!(status, 200);
    // (The request came from 127.0.0.3, which the rules allow: not provisional.)
    let (_, st) = from_allowed.admin("GET", "/api/v1/config/status", None);
    assert_eq!(st["pending"], Value::Null, "{st}");
    let url = from_allowed.url("/healthz");
    let (_, out, _) =
        run("curl", &["-s", "--interface", "127.0.0.4", "-o", "/dev/null", "-w", "%{http_code}", &url]);
    assert_eq!(out, "000", "denied by no_match");
}

#[test]
fn access_rules_that_deny_the_requester_are_refused_unless_forced_then_wait_for_confirmation() {
    let mut server = TestServer::start(&bin()).expect("start");
    let rules =
        json!({"enabled": true, "no_match": "deny", "rules": [{"kind": "allow", "source": "127.0.0.3"}]});
    // Sent from 127.0.0.1, which the new rules deny: refused, naming the address, nothing changed.
    let (status, err) = server.admin("PUT", "/api/v1/access-control", Some(rules.clone()));
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "would_lock_out");
    assert_eq!(err["error"]["field"], "rules");
    let message = err["error"]["message"].as_str().expect("message");
    assert!(message.contains("127.0.0.1") && message.contains("force=true"), "{message}");
    assert_eq!(server.admin("GET", "/api/v1/access-control", None).1["enabled"], false);
    assert_eq!(server.admin("GET", "/api/v1/config/status", None).1["pending"], Value::Null);
    // The finding's own example (no match: deny, no rules): refused too.
    let (status, err) = server.admin(
        "PUT",
        "/api/v1/access-control",
        Some(json!({"enabled": true, "no_match": "deny", "rules": []})),
    );
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("would_lock_out")));
    // Forced: applied, and the answer says it is provisional, until when, how to confirm.
    let (status, body) = server.admin("PUT", "/api/v1/access-control?force=true", Some(rules));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["provisional"], true);
    assert_eq!(body["confirm"], "POST /api/v1/config/confirm");
    assert!(body["reason"].as_str().expect("reason").contains("127.0.0.1"), "{body}");
    assert_eq!(body["settings"]["no_match"], "deny");
    let deadline = body["deadline"].as_str().expect("deadline").to_string();
    assert_eq!(
        server.client().get(server.url("/healthz")).send().map(|r| r.status().as_u16()).unwrap_or(0),
        0
    );
    // An allowed address confirms; the rules stay.
    server.source = "127.0.0.3".parse().expect("ip");
    let (_, st) = server.admin("GET", "/api/v1/config/status", None);
    assert!(st["pending"]["reason"].as_str().expect("reason").contains("127.0.0.1"), "{st}");
    assert_eq!(st["pending"]["deadline"], deadline.as_str());
    let (code, _) = server.admin("POST", "/api/v1/config/confirm", None);
    assert_eq!(code, 200);
    let (code, _) = server.admin("POST", "/api/v1/config/store", None);
    assert_eq!(code, 200);
}

#[test]
fn redirect_to_https_keeps_path_and_query() {
    let server = TestServer::start(&bin()).expect("start");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["http_redirect_to_https"] = json!(true);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    let url = format!("http://localhost:{}/api/v1/logfile?format=text", server.http_ports[0]);
    let (_, out, _) = run("curl", &["-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", &url]);
    assert_eq!(out, format!("308 https://localhost:{}/api/v1/logfile?format=text", server.https_port));
    assert!(
        raw_get(server.http_ports[0], "/healthz").expect("healthz").starts_with("HTTP/1.1 200"),
        "/healthz is exempt"
    );
    // Following it with curl works end to end.
    let (_, out, _) = run(
        "curl",
        &[
            "-sk",
            "--location-trusted",
            "-u",
            &format!("admin:{ADMIN_PASSWORD}"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ],
    );
    assert_eq!(out, "200");
}

#[test]
fn hsts_needs_a_ca_signed_certificate() {
    let server = TestServer::start(&bin()).expect("start");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["hsts_enabled"] = json!(true);
    let (status, err) = server.admin("PUT", "/api/v1/webserver", Some(s.clone()));
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "hsts_needs_trusted_certificate");
    assert_eq!(err["error"]["field"], "hsts_enabled");
    // With a CA-signed certificate it is accepted, and sent over HTTPS only.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&dir.path().join("ca")).expect("ca");
    let (chain, key) = ca
        .issue("hsts.portcullis.test", "hsts", &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        .expect("issue");
    let (status, view) = server.upload(
        "/api/v1/certificate/upload",
        &[
            ("certificate", std::fs::read(&chain).expect("chain")),
            ("private_key", std::fs::read(&key).expect("key")),
        ],
    );
    assert_eq!(status, 200, "{view}");
    s["hsts_max_age_seconds"] = json!(86400);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    let r = server.client().get(server.https_url("/healthz")).send().expect("https");
    assert_eq!(r.headers()["strict-transport-security"], "max-age=86400");
    let r = server.client().get(server.url("/healthz")).send().expect("http");
    assert!(r.headers().get("strict-transport-security").is_none());
}

#[test]
fn unsafe_ports_warn_and_privileged_errors_are_clear() {
    let server = TestServer::start(&bin()).expect("start");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    let unsafe_port = 6669;
    if std::net::TcpListener::bind(("0.0.0.0", unsafe_port)).is_err() {
        return; // Port taken on this machine: nothing to check here.
    }
    s["http_ports"] = json!([server.http_ports[0], unsafe_port]);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    let (_, status) = server.admin("GET", "/api/v1/config/status", None);
    assert!(status["warnings"][0].as_str().expect("warning").contains("6669"), "{status}");
}
