//! API tokens (issue 22, item 1) against the real binary: curl sending
//! `Authorization: Bearer`, a raw keep-alive connection for revocation, the
//! wall clock faked (libfaketime) for expiry, loopback sources for the
//! source list and the intrusion detection, the offline command line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use portcullis_testkit::{Options, TestServer, curl_status, run};
use serde_json::{Value, json};

use crate::bin;
use crate::clock::faked_wall_clock;

/// Makes a token as admin (Basic); status and answer.
fn make(server: &TestServer, body: Value) -> (u16, Value) {
    server.admin("POST", "/api/v1/tokens", Some(body))
}

/// The secret of a token made as admin with `body`.
fn secret(server: &TestServer, body: Value) -> String {
    let (status, answer) = make(server, body);
    assert_eq!(status, 201, "{answer}");
    let token = answer["token"].as_str().expect("the secret").to_string();
    assert!(token.starts_with("pcl_") && token.len() == 47, "{token}");
    token
}

/// Status of curl from `source` with the bearer `token` and curl options `extra`.
fn bearer(source: &str, url: &str, token: &str, extra: &[&str]) -> u16 {
    let header = format!("Authorization: Bearer {token}");
    let mut args = vec!["-H", header.as_str()];
    args.extend_from_slice(extra);
    curl_status(source, url, &args)
}

/// curl options for a JSON body sent with `method`.
fn json_body<'a>(method: &'a str, body: &'a str) -> Vec<&'a str> {
    vec!["-X", method, "-H", "Content-Type: application/json", "--data", body]
}

fn portcullis(args: &[&str]) -> (i32, String, String) {
    run(bin().to_str().expect("utf8 path"), args)
}

#[test]
fn scopes_give_what_they_say_and_never_more_than_the_account() {
    let server = TestServer::start(&bin()).expect("start");
    let url = server.url("/api/v1/webserver");
    let (_, settings) = server.admin("GET", "/api/v1/webserver", None);
    let settings = settings.to_string();

    let read = secret(&server, json!({"name": "monitor", "scope": "read-only"}));
    assert_eq!(bearer("127.0.0.1", &url, &read, &[]), 200);
    assert_eq!(bearer("127.0.0.1", &url, &read, &json_body("PUT", &settings)), 403);
    assert_eq!(bearer("127.0.0.1", &server.url("/api/v1/config/store"), &read, &["-X", "POST"]), 403);
    assert_eq!(bearer("127.0.0.1", &server.url("/api/v1/tokens"), &read, &[]), 200, "lists, never secrets");

    let operator = secret(&server, json!({"name": "vms", "scope": "operator"}));
    assert_eq!(bearer("127.0.0.1", &url, &operator, &json_body("PUT", &settings)), 200);
    assert_eq!(bearer("127.0.0.1", &server.url("/api/v1/config/store"), &operator, &["-X", "POST"]), 200);
    let another = r#"{"name": "more", "scope": "administrator"}"#;
    let tokens_url = server.url("/api/v1/tokens");
    assert_eq!(bearer("127.0.0.1", &tokens_url, &operator, &json_body("POST", another)), 403);
    let user_url = server.url("/api/v1/users/mallory");
    let user = r#"{"group": "admins", "password": "a long password"}"#;
    assert_eq!(bearer("127.0.0.1", &user_url, &operator, &json_body("PUT", user)), 403);

    let admin = secret(&server, json!({"name": "provisioning", "scope": "administrator"}));
    assert_eq!(bearer("127.0.0.1", &tokens_url, &admin, &json_body("POST", another)), 201);
    assert_eq!(bearer("127.0.0.1", &user_url, &admin, &json_body("PUT", user)), 200);

    // An account that may change nothing has read-only tokens at most.
    let (status, _) = server.admin(
        "PUT",
        "/api/v1/users/viewer",
        Some(json!({"group": "users", "password": "viewer password"})),
    );
    assert_eq!(status, 200);
    let (status, e) = make(&server, json!({"name": "v-op", "scope": "operator", "account": "viewer"}));
    assert_eq!(status, 400, "{e}");
    assert_eq!(
        (e["error"]["code"].as_str(), e["error"]["field"].as_str()),
        (Some("scope_exceeds_account"), Some("scope"))
    );
    let viewer = secret(&server, json!({"name": "v-read", "scope": "read-only", "account": "viewer"}));
    assert_eq!(bearer("127.0.0.1", &server.url("/api/v1/build"), &viewer, &[]), 200);
    assert_eq!(bearer("127.0.0.1", &tokens_url, &viewer, &[]), 403, "the account's own rights still hold");

    // Input the rules refuse changes nothing.
    for (body, code, field) in [
        (json!({"name": "a b", "scope": "read-only"}), "invalid_name", "name"),
        (json!({"name": "x", "scope": "root"}), "invalid_value", "scope"),
        (json!({"name": "x", "scope": "read-only", "expires_in_days": 0}), "out_of_range", "expires_in_days"),
        (
            json!({"name": "x", "scope": "read-only", "allowed_sources": ["10.0.0.1/8"]}),
            "host_bits_set",
            "allowed_sources[0]",
        ),
        (json!({"name": "x", "scope": "read-only", "account": "nobody"}), "not_found", "account"),
    ] {
        let (status, e) = make(&server, body.clone());
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["code"], code, "{body}: {e}");
        if field != "scope" {
            assert_eq!(e["error"]["field"], field, "{body}: {e}");
        }
    }
    let (status, e) = make(&server, json!({"name": "monitor", "scope": "read-only"}));
    assert_eq!((status, e["error"]["code"].as_str()), (409, Some("duplicate")));
    let (_, list) = server.admin("GET", "/api/v1/tokens", None);
    let names: Vec<&str> = list.as_array().expect("list").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["monitor", "more", "provisioning", "v-read", "vms"]);
    let monitor = &list[0];
    assert_eq!((monitor["account"].as_str(), monitor["scope"].as_str()), (Some("admin"), Some("read-only")));
    assert!(monitor["last_used"].is_string(), "used above: {monitor}");
    assert!(monitor.get("token").is_none() && monitor.get("hash").is_none(), "{monitor}");
    let events: Value = server.admin("GET", "/api/v1/events?limit=1000", None).1;
    let created =
        events["events"].as_array().expect("events").iter().filter(|e| e["kind"] == "token_created").count();
    assert_eq!(created, 5);
}

/// Sends one request on an open HTTP/1.1 connection and reads its answer; the status.
fn exchange(stream: &mut BufReader<TcpStream>, request: &str) -> u16 {
    stream.get_mut().write_all(request.as_bytes()).expect("send");
    let mut status_line = String::new();
    stream.read_line(&mut status_line).expect("status line");
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).expect("header");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("length");
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("body");
    status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status")
}

#[test]
fn a_revoked_token_is_refused_on_the_next_request_of_an_open_connection() {
    let server = TestServer::start(&bin()).expect("start");
    let token = secret(&server, json!({"name": "kept-alive", "scope": "read-only"}));
    let socket = TcpStream::connect(("127.0.0.1", server.http_ports[0])).expect("connect");
    socket.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut conn = BufReader::new(socket);
    let request =
        format!("GET /api/v1/webserver HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    assert_eq!(exchange(&mut conn, &request), 200);
    assert_eq!(exchange(&mut conn, &request), 200, "the connection is kept alive");
    assert_eq!(server.admin("DELETE", "/api/v1/tokens/kept-alive", None).0, 204);
    assert_eq!(exchange(&mut conn, &request), 401, "the same connection, the next request");
    let (_, list) = server.admin("GET", "/api/v1/tokens", None);
    assert_eq!(list, json!([]));
    assert_eq!(server.admin("DELETE", "/api/v1/tokens/kept-alive", None).0, 404);
    let events: Value = server.admin("GET", "/api/v1/events?limit=1000", None).1;
    let revoked: Vec<&Value> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "token_revoked")
        .collect();
    assert_eq!(revoked.len(), 1, "{events}");
    assert_eq!(revoked[0]["details"]["name"], "kept-alive");
}

#[test]
fn an_expired_token_is_refused_by_itself() {
    let work = tempfile::tempdir().expect("dir");
    let clock = work.path().join("clock");
    std::fs::write(&clock, "+0\n").expect("clock");
    let server =
        TestServer::start_with(&bin(), Options { env: faked_wall_clock(&clock), ..Default::default() })
            .expect("start");
    let token = secret(&server, json!({"name": "week", "scope": "read-only", "expires_in_days": 7}));
    let url = server.url("/api/v1/webserver");
    assert_eq!(bearer("127.0.0.1", &url, &token, &[]), 200);
    std::fs::write(&clock, "+6d\n").expect("clock");
    assert_eq!(bearer("127.0.0.1", &url, &token, &[]), 200, "six days on");
    std::fs::write(&clock, "+7d\n").expect("clock");
    let header = format!("Authorization: Bearer {token}");
    let (_, out, _) = run("curl", &["-s", "-H", &header, &url]);
    assert!(out.contains("\"unauthorized\"") && out.contains("expired"), "{out}");
    let (_, list) = server.admin("GET", "/api/v1/tokens", None);
    assert_eq!(list[0]["name"], "week", "listed until revoked, with its expiry: {list}");
    assert!(list[0]["expires_at"].is_string());
}

/// A server with threshold 5, blocking on, access control on (no match: allow).
fn guarded() -> TestServer {
    let server = TestServer::start(&bin()).expect("start");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    s["intrusion_detection"]["block_ip"] = json!(true);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    assert_eq!(server.admin("PUT", "/api/v1/access-control", Some(json!({"enabled": true}))).0, 200);
    server
}

#[test]
fn a_token_is_used_only_from_its_sources() {
    let server = guarded();
    let token = secret(
        &server,
        json!({"name": "camera-vms", "scope": "read-only", "allowed_sources": ["127.0.0.2"]}),
    );
    let url = server.url("/api/v1/webserver");
    assert_eq!(bearer("127.0.0.2", &url, &token, &[]), 200);
    assert_eq!(bearer("127.0.0.3", &url, &token, &[]), 401, "a stolen token used elsewhere");
    let (_, list) = server.admin("GET", "/api/v1/tokens", None);
    assert_eq!(list[0]["allowed_sources"], json!(["127.0.0.2"]));
    // Counted against the address it was tried from, under its account.
    let (_, log) = server.admin("GET", "/api/v1/logfile", None);
    let tried =
        log["entries"].as_array().expect("entries").iter().find(|e| e["client_ip"] == "127.0.0.3").cloned();
    let tried = tried.expect("logged");
    assert_eq!((tried["authorized"].as_bool(), tried["user"].as_str()), (Some(false), Some("admin")));
}

#[test]
fn wrong_tokens_are_failed_logins_and_block_the_client_at_the_threshold() {
    let server = guarded();
    let good = secret(&server, json!({"name": "scraper", "scope": "read-only"}));
    let url = server.url("/api/v1/webserver");
    let guess = format!("pcl_{}", "A".repeat(43));
    for i in 1..=6 {
        assert_eq!(bearer("127.0.0.2", &url, &guess, &[]), 401, "attempt {i}");
    }
    assert_eq!(curl_status("127.0.0.2", &server.url("/healthz"), &[]), 0, "blocked at the connection");
    assert_eq!(bearer("127.0.0.2", &url, &good, &[]), 0, "even with a good token");
    assert_eq!(bearer("127.0.0.3", &url, &good, &[]), 200, "another client is served");
    let (_, blocked) = server.admin("GET", "/api/v1/blocked", None);
    assert_eq!(blocked[0]["address"], "127.0.0.2", "{blocked}");
    let (_, log) = server.admin("GET", "/api/v1/logfile", None);
    let attack: Vec<&Value> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["client_ip"] == "127.0.0.2")
        .collect();
    assert_eq!(attack.len(), 1, "{log}");
    assert_eq!((attack[0]["count"].as_u64(), attack[0]["user"].as_str()), (Some(6), Some("(token)")));
    let events: Value = server.admin("GET", "/api/v1/events?limit=1000", None).1;
    assert!(
        events["events"].as_array().expect("events").iter().any(|e| e["kind"] == "intrusion_alert"),
        "{events}"
    );
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

#[test]
fn the_secret_is_never_listed_logged_nor_stored_in_clear_and_survives_a_restart() {
    let mut server = TestServer::start(&bin()).expect("start");
    let token = secret(&server, json!({"name": "fleet", "scope": "operator"}));
    let url = server.url("/api/v1/webserver");
    assert_eq!(bearer("127.0.0.1", &url, &token, &[]), 200);
    assert_eq!(bearer("127.0.0.1", &url, &format!("{token}x"), &[]), 401);
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200, "flushes the last use");
    let body = &token[4..];
    for path in ["/api/v1/tokens", "/api/v1/logfile", "/api/v1/events?limit=1000"] {
        let (_, _, text) = server.admin_text(path);
        assert!(!text.contains(body), "{path}: {text}");
    }
    let (_, _, text) = server.admin_text("/api/v1/logfile?format=text");
    assert!(!text.contains(body));
    assert!(!server.log().contains(body), "server log");
    let data = server.data_dir();
    for (path, bytes) in files_under(&data) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(body), "{} holds the secret", path.display());
    }
    let users = std::fs::read_to_string(data.join("users.json")).expect("users.json");
    let stored: Value = serde_json::from_str(&users).expect("json");
    assert!(stored["tokens"]["fleet"]["last_used"].is_string(), "{stored}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("token.key")).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    server.restart().expect("restart");
    assert_eq!(bearer("127.0.0.1", &url, &token, &[]), 200, "after a restart");
    let (status, _) = server.admin("POST", "/api/v1/reboot", None);
    assert_eq!(status, 200);
    assert_eq!(bearer("127.0.0.1", &url, &token, &[]), 200, "after a Reboot");
}

#[test]
fn the_command_line_makes_lists_and_revokes_tokens_offline() {
    let mut server = TestServer::start(&bin()).expect("start");
    let (status, _) = server.admin(
        "PUT",
        "/api/v1/users/viewer",
        Some(json!({"group": "users", "password": "viewer password"})),
    );
    assert_eq!(status, 200);
    server.kill();
    let data = server.data_dir();
    let data = data.to_str().expect("utf8");
    let (code, out, err) = portcullis(&[
        "token",
        "create",
        "ci",
        "--scope",
        "read-only",
        "--expires-in-days",
        "30",
        "--data-dir",
        data,
    ]);
    assert_eq!(code, 0, "{err}");
    let secret = out.trim().to_string();
    assert!(secret.starts_with("pcl_") && secret.len() == 47, "{out}");
    assert!(err.contains("\"admin\""), "the only admin by default: {err}");
    let (code, _, err) = portcullis(&[
        "token",
        "create",
        "wide",
        "--scope",
        "operator",
        "--account",
        "viewer",
        "--data-dir",
        data,
    ]);
    assert_ne!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("read-only"), "{err}");
    let (code, out, _) = portcullis(&["token", "list", "--data-dir", data]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ci\tadmin\tread-only\t") && !out.contains(&secret[4..]), "{out}");
    server.restart().expect("start");
    let url = server.url("/api/v1/webserver");
    assert_eq!(bearer("127.0.0.1", &url, &secret, &[]), 200);
    assert_eq!(server.terminate(), Some(0), "a graceful stop writes the last use");
    let (_, out, _) = portcullis(&["token", "list", "--data-dir", data]);
    assert!(!out.contains("last used -"), "{out}");
    let (code, _, err) = portcullis(&["token", "revoke", "ci", "--data-dir", data]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = portcullis(&["token", "revoke", "ci", "--data-dir", data]);
    assert_ne!(code, 0);
    assert!(err.contains("no token"), "{err}");
    server.restart().expect("start");
    assert_eq!(bearer("127.0.0.1", &url, &secret, &[]), 401);
    let (_, events) = server.admin("GET", "/api/v1/events?limit=1000", None);
    let kinds: Vec<&str> =
        events["events"].as_array().expect("events").iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"token_created") && kinds.contains(&"token_revoked"), "{kinds:?}");
}

#[cfg(feature = "metrics")]
#[test]
fn curl_scrapes_the_metrics_with_a_read_only_token() {
    let server = TestServer::start(&bin()).expect("start");
    let token = secret(&server, json!({"name": "prometheus", "scope": "read-only"}));
    let header = format!("Authorization: Bearer {token}");
    let url = server.url("/metrics");
    let (code, out, err) = run("curl", &["-sf", "-H", &header, &url]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("# TYPE") && out.contains("portcullis_"), "{out}");
    assert_eq!(curl_status("127.0.0.1", &url, &[]), 401, "not without one");
    assert_eq!(bearer("127.0.0.1", &url, "pcl_wrong", &[]), 401);
    assert!(
        server.admin("GET", "/api/v1/tokens", None).1[0]["last_used"].is_string(),
        "the scrape is its last use"
    );
}

/// A refused bearer token is answered with RFC 6750's challenge
/// (`error="invalid_token"`), not a password scheme's: the client learns
/// that its token, not the way it authenticates, is the problem.
#[test]
fn a_refused_bearer_token_gets_the_rfc_6750_challenge() {
    let server = TestServer::start(&bin()).expect("start");
    let url = server.url("/api/v1/webserver");
    let challenges = |args: &[&str]| -> (u16, Vec<String>) {
        let mut all = vec!["-s", "-D", "-", "-o", "/dev/null"];
        all.extend_from_slice(args);
        all.push(&url);
        let (_, out, _) = run("curl", &all);
        let status = out.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let found = out
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(name, _)| name.eq_ignore_ascii_case("www-authenticate"))
            .map(|(_, v)| v.trim().to_string())
            .collect();
        (status, found)
    };
    let wrong = format!("Authorization: Bearer pcl_{}", "B".repeat(43));
    let (status, found) = challenges(&["-H", &wrong]);
    assert_eq!(status, 401);
    assert_eq!(found, ["Bearer realm=\"portcullis\", error=\"invalid_token\""], "{found:?}");
    // Without credentials, or with a wrong password, the Basic challenge as before.
    let (status, found) = challenges(&[]);
    assert_eq!(status, 401);
    assert!(found.first().is_some_and(|c| c.starts_with("Basic ")), "{found:?}");
    let (_, found) = challenges(&["-u", "admin:wrong"]);
    assert!(found.first().is_some_and(|c| c.starts_with("Basic ")), "{found:?}");
}
