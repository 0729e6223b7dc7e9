//! Listeners, TLS, the configuration life cycle, users, API errors, limits.

use std::time::Duration;

use portcullis_testkit::{ADMIN_PASSWORD, Options, TestServer, free_port, raw_get, run, wait_until};
use serde_json::{Value, json};

use crate::bin;

fn start() -> TestServer {
    TestServer::start(&bin()).expect("server starts")
}

/// `Authorization: Basic` credentials of the test admin.
fn admin_basic() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"))
}

/// A plain connection to the server's first HTTP port, reads bounded by `timeout_s`.
fn raw_connection(server: &TestServer, timeout_s: u64) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(("127.0.0.1", server.http_ports[0])).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(timeout_s))).expect("timeout");
    s
}

fn s_client(port: u16, extra: &[&str]) -> (i32, String) {
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec!["s_client", "-connect", connect.as_str(), "-servername", "localhost"];
    args.extend_from_slice(extra);
    let out = std::process::Command::new("openssl")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn fingerprint_over_tls(port: u16) -> String {
    let (_, out) = s_client(port, &[]);
    let pem_start = out.find("-----BEGIN CERTIFICATE-----").expect("certificate in s_client output");
    let pem_end = out.find("-----END CERTIFICATE-----").expect("end of certificate")
        + "-----END CERTIFICATE-----".len();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.pem");
    std::fs::write(&path, &out[pem_start..pem_end]).expect("write");
    let (code, fp, _) =
        run("openssl", &["x509", "-in", path.to_str().expect("utf8"), "-noout", "-fingerprint", "-sha256"]);
    assert_eq!(code, 0);
    fp.trim().split_once('=').expect("fingerprint line").1.to_string()
}

#[test]
fn http_on_two_ports_and_https_with_the_factory_certificate() {
    let server =
        TestServer::start_with(&bin(), Options { http_ports: 2, ..Default::default() }).expect("start");
    for port in &server.http_ports {
        let r = raw_get(*port, "/healthz").expect("answer");
        assert!(r.starts_with("HTTP/1.1 200"), "port {port}: {r}");
    }
    // HTTPS with curl, HTTP/2 negotiated by ALPN (HTTP/1.1 in a build without it).
    let url = server.https_url("/healthz");
    let (code, out, err) =
        run("curl", &["-sk", "--http2", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, if cfg!(feature = "http2") { "200 2" } else { "200 1.1" });
    let (code, out, _) =
        run("curl", &["-sk", "--http1.1", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", &url]);
    assert_eq!(code, 0);
    assert_eq!(out, "200 1.1");
    // The API's fingerprint is the one the TLS handshake shows.
    let (status, view) = server.admin("GET", "/api/v1/certificate", None);
    assert_eq!(status, 200);
    assert_eq!(view["source"], "factory");
    let cert = &view["certificate"];
    assert_eq!(cert["fingerprint_sha256"].as_str().expect("fp"), fingerprint_over_tls(server.https_port));
    assert!(
        server.log().contains(cert["fingerprint_sha256"].as_str().expect("fp")),
        "fingerprint printed at start"
    );
    let sans = cert["subject_alt_names"].to_string();
    assert!(sans.contains("localhost") && sans.contains("127.0.0.1"), "{sans}");
}

#[test]
fn tls_1_1_is_refused_and_1_2_and_1_3_accepted() {
    let server = start();
    // SECLEVEL=0 lets OpenSSL 3's client offer TLS 1.1 at all; else the test could not fail.
    let (code, out) = s_client(server.https_port, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]);
    assert_ne!(code, 0, "TLS 1.1 handshake must fail: {out}");
    assert!(out.contains("no peer certificate available") && out.contains("Cipher is (NONE)"), "{out}");
    let (code, out) = s_client(server.https_port, &["-tls1_2"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("TLSv1.2"), "{out}");
    let (code, out) = s_client(server.https_port, &["-tls1_3"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("TLSv1.3"), "{out}");
}

#[test]
fn two_data_folders_get_different_factory_certificates() {
    let a = start();
    let b = start();
    let fa = fingerprint_over_tls(a.https_port);
    let fb = fingerprint_over_tls(b.https_port);
    assert_ne!(fa, fb);
    let key = a.data_dir().join("certs/factory.pem");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).expect("key file").permissions());
    assert_eq!(mode & 0o777, 0o600);
    // The certificate survives a restart.
    let mut a = a;
    a.restart().expect("restart");
    assert_eq!(fingerprint_over_tls(a.https_port), fa);
}

#[test]
fn login_is_required_and_only_admins_change_settings() {
    let server = start();
    let resp = server.client().get(server.url("/api/v1/webserver")).send().expect("send");
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()
            .get("www-authenticate")
            .expect("challenge")
            .to_str()
            .expect("ascii")
            .starts_with("Basic")
    );
    let body: Value = resp.json().expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = server.request_as("admin", "wrong-password", "GET", "/api/v1/webserver", None);
    assert_eq!(status, 401);
    let (status, user) = server.admin(
        "PUT",
        "/api/v1/users/viewer",
        Some(json!({"group": "users", "password": "viewer-password"})),
    );
    assert_eq!(status, 200, "{user}");
    let (status, settings) = server.request_as("viewer", "viewer-password", "GET", "/api/v1/webserver", None);
    assert_eq!(status, 200);
    let (status, err) =
        server.request_as("viewer", "viewer-password", "PUT", "/api/v1/webserver", Some(settings));
    assert_eq!(status, 403);
    assert_eq!(err["error"]["code"], "forbidden");
    // The health check needs no login.
    assert_eq!(server.client().get(server.url("/healthz")).send().expect("send").status(), 200);
}

#[test]
fn every_refusal_leaves_the_settings_unchanged() {
    let server = start();
    let (_, before) = server.admin("GET", "/api/v1/webserver", None);
    let https = server.https_port;
    let http = server.http_ports[0];
    let cases = [
        (
            json!({"http_enabled": false, "https_enabled": false, "http_ports": [http], "https_port": https}),
            "no_listener",
            "https_enabled",
        ),
        (json!({"http_ports": [http, http], "https_port": https}), "duplicate", "http_ports[1]"),
        (json!({"http_ports": [https], "https_port": https}), "port_conflict", "http_ports[0]"),
        (json!({"http_ports": [0], "https_port": https}), "out_of_range", "http_ports[0]"),
        (json!({"http_ports": [http], "https_port": 0}), "out_of_range", "https_port"),
        (json!({"http_ports": [70000]}), "invalid_value", "http_ports[0]"),
        (
            json!({"http_ports": [http], "https_port": https, "intrusion_detection": {"notification_threshold": 4}}),
            "out_of_range",
            "intrusion_detection.notification_threshold",
        ),
        (
            json!({"http_ports": [http], "https_port": https, "intrusion_detection": {"thresh": 5}}),
            "unknown_field",
            "intrusion_detection.thresh",
        ),
        (
            json!({"http_ports": [http], "https_port": https, "intrusion_detection": {"email_profile": "nobody"}}),
            "unknown_profile",
            "intrusion_detection.email_profile",
        ),
    ];
    for (body, code, field) in cases {
        let (status, err) = server.admin("PUT", "/api/v1/webserver", Some(body.clone()));
        assert_eq!(status, 400, "{body} -> {err}");
        assert_eq!(err["error"]["code"], code, "{body} -> {err}");
        assert_eq!(err["error"]["field"], field, "{body} -> {err}");
        assert!(err["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        let (_, after) = server.admin("GET", "/api/v1/webserver", None);
        assert_eq!(after, before, "refused {body} changed the settings");
    }
    let (_, status) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(status["unsaved_changes"], false, "{status}");
    // A port in use by another process is refused at Set, nothing changed.
    let blocker = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let busy = blocker.local_addr().expect("addr").port();
    let (status, err) = server.admin(
        "PUT",
        "/api/v1/webserver",
        Some(json!({"http_ports": [http, busy], "https_port": https})),
    );
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "port_unavailable");
    let (_, after) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(after, before);
}

#[test]
fn a_get_body_put_back_unchanged_is_accepted() {
    let server = start();
    let (_, settings) = server.admin("GET", "/api/v1/webserver", None);
    let (status, back) = server.admin("PUT", "/api/v1/webserver", Some(settings.clone()));
    assert_eq!(status, 200, "{back}");
    assert_eq!(back, settings);
}

#[test]
fn set_answers_on_a_new_port_then_restore_undoes_it() {
    let server = start();
    let (_, mut settings) = server.admin("GET", "/api/v1/webserver", None);
    let extra = free_port();
    settings["http_ports"] = json!([server.http_ports[0], extra]);
    let (status, _) = server.admin("PUT", "/api/v1/webserver", Some(settings));
    assert_eq!(status, 200);
    assert!(raw_get(extra, "/healthz").expect("new port answers").starts_with("HTTP/1.1 200"));
    let (_, status) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(status["unsaved_changes"], true);
    assert_eq!(status["changed_sections"], json!(["webserver"]));
    let (code, _) = server.admin("POST", "/api/v1/config/restore", None);
    assert_eq!(code, 200);
    let (_, status) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(status["unsaved_changes"], false, "{status}");
    assert!(
        wait_until(Duration::from_secs(15), || raw_get(extra, "/healthz").is_none()),
        "removed port closes"
    );
}

#[test]
fn set_store_reboot_keeps_the_change() {
    let mut server =
        TestServer::start_with(&bin(), Options { ports_on_command_line: false, ..Default::default() })
            .expect("start");
    let (_, mut settings) = server.admin("GET", "/api/v1/webserver", None);
    settings["intrusion_detection"]["notification_threshold"] = json!(7);
    let extra = free_port();
    settings["http_ports"] = json!([server.http_ports[0], extra]);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(settings.clone())).0, 200);
    let (code, status) = server.admin("POST", "/api/v1/config/store", None);
    assert_eq!(code, 200);
    assert_eq!(status["unsaved_changes"], false);
    let (code, outcome) = server.admin("POST", "/api/v1/reboot", None);
    assert_eq!(code, 200, "{outcome}");
    let (_, after) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(after, settings);
    assert!(raw_get(extra, "/healthz").is_some());
    // And across a real process restart.
    server.restart().expect("restart");
    let (_, after) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(after, settings);
    // A Set that is not stored is gone after a reboot.
    settings["intrusion_detection"]["notification_threshold"] = json!(9);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(settings)).0, 200);
    assert_eq!(server.admin("POST", "/api/v1/reboot", None).0, 200);
    let (_, after) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(after["intrusion_detection"]["notification_threshold"], 7);
}

#[test]
fn command_line_ports_override_the_stored_ones_at_reboot() {
    let server = start();
    let (_, mut settings) = server.admin("GET", "/api/v1/webserver", None);
    let other = free_port();
    settings["http_ports"] = json!([other]);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(settings)).0, 202);
    // The client's port goes away: confirm through the new one, then store.
    let client = server.client();
    let url = format!("http://127.0.0.1:{other}");
    let confirm = client
        .post(format!("{url}/api/v1/config/confirm"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .expect("confirm");
    assert_eq!(confirm.status(), 200);
    let store = client
        .post(format!("{url}/api/v1/config/store"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .expect("store");
    assert_eq!(store.status(), 200);
    let reboot = client
        .post(format!("{url}/api/v1/reboot"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .expect("reboot");
    assert_eq!(reboot.status(), 200);
    // After the reboot the command-line port is back in force.
    let (status, settings) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(status, 200);
    assert_eq!(settings["http_ports"], json!([server.http_ports[0]]));
}

#[test]
fn sigkill_during_set_and_store_always_restarts_complete() {
    let mut server = start();
    let mut rng_state = std::process::id() as u64;
    for round in 0..10 {
        let client = server.client();
        let url = server.url("/api/v1/webserver");
        let store_url = server.url("/api/v1/config/store");
        let (_, base) = server.admin("GET", "/api/v1/webserver", None);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let writer = std::thread::spawn(move || {
            let mut n = 5u32;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let mut s = base.clone();
                s["intrusion_detection"]["notification_threshold"] = json!(n);
                n = if n > 500 { 5 } else { n + 1 };
                let ok = client.put(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).json(&s).send().is_ok()
                    && client.post(&store_url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().is_ok();
                if !ok {
                    break;
                }
            }
        });
        // A pseudo-random moment between 20 and 300 ms into the writes.
        rng_state = rng_state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(20 + (rng_state >> 33) % 280));
        server.kill();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = writer.join();
        let leftovers: Vec<_> = std::fs::read_dir(server.data_dir())
            .expect("data dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("broken"))
            .collect();
        assert!(leftovers.is_empty(), "round {round}: a torn file was found: {leftovers:?}");
        server.restart().unwrap_or_else(|e| panic!("round {round}: restart failed: {e}"));
        let (_, status) = server.admin("GET", "/api/v1/config/status", None);
        assert!(
            status["load"]["source"] == "stored" || status["load"]["source"] == "factory",
            "round {round}: {status}"
        );
        assert_eq!(status["load"]["problems"], json!([]), "round {round}: {status}");
    }
}

#[test]
fn an_unreadable_config_file_is_moved_aside_and_reported() {
    let mut server =
        TestServer::start_with(&bin(), Options { ports_on_command_line: true, ..Default::default() })
            .expect("start");
    server.kill();
    std::fs::write(server.data_dir().join("config.json"), b"{\"version\": 1, \"webserver\": {\"http_po")
        .expect("tear");
    server.restart().expect("restart on factory settings");
    let (_, status) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(status["load"]["source"], "factory", "{status}");
    let problem = status["load"]["problems"][0].as_str().expect("a problem is reported");
    assert!(problem.contains("moved aside"), "{problem}");
    let moved: Vec<_> = std::fs::read_dir(server.data_dir())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("config.json.broken-"))
        .collect();
    assert_eq!(moved.len(), 1);
    assert!(
        std::fs::read_to_string(moved[0].path()).expect("kept").contains("http_po"),
        "the file is kept, not deleted"
    );
    assert!(server.log().contains("CONFIGURATION PROBLEM"), "said loudly in the log");
}

#[test]
fn after_store_and_reboot_the_status_says_stored() {
    let server = start();
    let (_, status) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(status["load"]["source"], "factory", "first start: {status}");
    // A Reboot with nothing stored still runs on factory settings.
    assert_eq!(server.admin("POST", "/api/v1/reboot", None).0, 200);
    let (_, status) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(status["load"]["source"], "factory", "nothing stored yet: {status}");
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
    assert_eq!(server.admin("POST", "/api/v1/reboot", None).0, 200);
    let (_, status) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(status["load"]["source"], "stored", "after Store and Reboot: {status}");
    assert_eq!(status["load"]["problems"], json!([]), "{status}");
}

#[test]
fn a_broken_config_falls_back_to_the_last_good_copy() {
    let mut server = start();
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(11);
    server.admin("PUT", "/api/v1/webserver", Some(s.clone()));
    server.admin("POST", "/api/v1/config/store", None);
    s["intrusion_detection"]["notification_threshold"] = json!(12);
    server.admin("PUT", "/api/v1/webserver", Some(s));
    server.admin("POST", "/api/v1/config/store", None);
    server.kill();
    std::fs::write(server.data_dir().join("config.json"), b"garbage").expect("break");
    server.restart().expect("restart");
    let (_, status) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(status["load"]["source"], "backup", "{status}");
    let (_, s) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(s["intrusion_detection"]["notification_threshold"], 11);
}

#[test]
fn every_error_answer_is_json() {
    let server = start();
    let client = server.client();
    let r = client.get(server.url("/api/v1/nothing-here")).send().expect("send");
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().expect("json")["error"]["code"], "not_found");
    let r = client
        .delete(server.url("/api/v1/webserver"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .expect("send");
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().expect("json")["error"]["code"], "method_not_allowed");
    // A body declared larger than the limit is refused before it is read.
    {
        use std::io::{Read, Write};
        let mut s = raw_connection(&server, 10);
        write!(
            s,
            "PUT /api/v1/webserver HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            admin_basic(),
            2 * 1024 * 1024
        )
        .expect("write");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"payload_too_large\""), "{answer}");
    }
    // A chunked body (no declared length) is cut off at the 1 MiB limit too,
    // below axum's own default of 2 MiB: a valid Set padded with spaces to
    // 1.5 MiB changes nothing.
    {
        let (_, mut ws) = server.admin("GET", "/api/v1/webserver", None);
        let before = ws["intrusion_detection"]["notification_threshold"].clone();
        ws["intrusion_detection"]["notification_threshold"] = serde_json::json!(7);
        let mut body = serde_json::to_vec(&ws).expect("json");
        body.resize(body.len() + 1536 * 1024, b' ');
        let sent = client
            .put(server.url("/api/v1/webserver"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("content-type", "application/json")
            .body(reqwest::blocking::Body::new(std::io::Cursor::new(body)))
            .send();
        // The server may close before the client has sent it all; if the answer arrives, it is 413.
        if let Ok(r) = sent {
            assert_eq!(r.status(), 413);
            assert_eq!(r.json::<Value>().expect("json")["error"]["code"], "payload_too_large");
        }
        let (_, now) = server.admin("GET", "/api/v1/webserver", None);
        assert_eq!(now["intrusion_detection"]["notification_threshold"], before);
    }
    let r = client
        .put(server.url("/api/v1/webserver"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .expect("send");
    assert_eq!(r.status(), 415);
    let r = client
        .put(server.url("/api/v1/webserver"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("content-type", "application/json")
        .body("{\"http_ports\": [")
        .send()
        .expect("send");
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().expect("json")["error"]["code"], "malformed_json");
}

#[test]
fn a_client_that_shuts_down_its_sending_side_still_gets_its_answer() {
    // HTTP/1.0-style clients (`nc -N`, scripts) send the request, then shut
    // down their side. The answer takes a while here (the first Basic
    // login verifies the password hash): the server must not take the
    // half-closed connection for a client that went away.
    use std::io::{Read, Write};
    let server = start();
    let mut s = raw_connection(&server, 20);
    write!(
        s,
        "GET /api/v1/webserver HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {}\r\n\r\n",
        admin_basic()
    )
    .expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"http_ports\""), "{answer}");
}

#[test]
fn oversized_headers_are_refused() {
    let server = start();
    let r = server.client().get(server.url("/healthz")).header("x-big", "a".repeat(64 * 1024)).send();
    // hyper answers 431, or closes the connection; either way the request is not served.
    if let Ok(r) = r {
        assert_eq!(r.status(), 431);
    }
}

#[test]
fn session_login_needs_the_csrf_token_and_same_origin() {
    let server = start();
    let client = reqwest::blocking::Client::builder().cookie_store(true).build().expect("client");
    let r = client
        .post(server.url("/api/v1/session"))
        .json(&json!({"user": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .expect("login");
    assert_eq!(r.status(), 200);
    let cookie = r.headers().get("set-cookie").expect("cookie").to_str().expect("ascii").to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "no Secure flag over plain HTTP: {cookie}");
    let session: Value = r.json().expect("json");
    let csrf = session["csrf_token"].as_str().expect("csrf").to_string();
    let settings: Value =
        client.get(server.url("/api/v1/webserver")).send().expect("get").json().expect("json");
    let r = client.put(server.url("/api/v1/webserver")).json(&settings).send().expect("put");
    assert_eq!(r.status(), 403, "unsafe request without CSRF token");
    assert_eq!(r.json::<Value>().expect("json")["error"]["code"], "csrf_token_invalid");
    let r = client
        .put(server.url("/api/v1/webserver"))
        .header("x-csrf-token", &csrf)
        .json(&settings)
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    // Cross-site: refused even with valid Basic credentials.
    let r = client
        .post(server.url("/api/v1/config/store"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("origin", "http://evil.example")
        .send()
        .expect("post");
    assert_eq!(r.status(), 403);
    // Logout ends the session.
    let r = client.delete(server.url("/api/v1/session")).send().expect("logout");
    assert_eq!(r.status(), 204);
    assert_eq!(client.get(server.url("/api/v1/webserver")).send().expect("get").status(), 401);
    // Over HTTPS the cookie is Secure.
    let r = server
        .client()
        .post(server.https_url("/api/v1/session"))
        .json(&json!({"user": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .expect("login");
    assert!(r.headers().get("set-cookie").expect("cookie").to_str().expect("ascii").contains("Secure"));
}

#[cfg(feature = "ui")]
#[test]
fn the_login_page_and_ui_are_served() {
    let server = start();
    let r = server.client().get(server.url("/admin/login")).send().expect("get");
    assert_eq!(r.status(), 200);
    let csp = r.headers().get("content-security-policy").expect("csp").to_str().expect("ascii").to_string();
    assert!(csp.contains("default-src 'self'"));
    let html = r.text().expect("text");
    let user = html.find("id=\"user\"").expect("user field");
    let password = html.find("id=\"password\"").expect("password field");
    assert!(user < password, "user name first, then password");
}

#[test]
fn users_are_managed_through_the_api() {
    let server = start();
    let (status, err) = server.admin("PUT", "/api/v1/users/op", Some(json!({"password": "short"})));
    assert_eq!(status, 400);
    assert_eq!(err["error"]["field"], "password");
    let (status, _) = server.admin("PUT", "/api/v1/users/op", Some(json!({"password": "long-enough-1"})));
    assert_eq!(status, 200);
    let (status, list) = server.admin("GET", "/api/v1/users", None);
    assert_eq!(status, 200);
    assert!(list.as_array().expect("list").iter().any(|u| u["name"] == "op" && u["group"] == "users"));
    assert!(!list.to_string().contains("argon2"), "hashes never leave the server");
    // The user changes its own password; the old one stops working.
    let (status, _) = server.request_as(
        "op",
        "long-enough-1",
        "PUT",
        "/api/v1/users/op",
        Some(json!({"password": "long-enough-2", "current_password": "long-enough-1"})),
    );
    assert_eq!(status, 200);
    assert_eq!(server.request_as("op", "long-enough-1", "GET", "/api/v1/webserver", None).0, 401);
    assert_eq!(server.request_as("op", "long-enough-2", "GET", "/api/v1/webserver", None).0, 200);
    // But cannot make itself an admin.
    let (status, _) =
        server.request_as("op", "long-enough-2", "PUT", "/api/v1/users/op", Some(json!({"group": "admins"})));
    assert_eq!(status, 403);
    // The last admin cannot go.
    let (status, err) = server.admin("DELETE", "/api/v1/users/admin", None);
    assert_eq!(status, 409, "{err}");
    assert_eq!(server.admin("DELETE", "/api/v1/users/op", None).0, 204);
}

#[cfg(feature = "openapi")]
#[test]
fn the_openapi_document_matches_the_routes() {
    let server = start();
    let doc: Value =
        server.client().get(server.url("/api/v1/openapi.json")).send().expect("get").json().expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 10);
    // Documented means built: no path of a left-out feature is listed.
    for (path, ops) in paths {
        for method in ops.as_object().expect("ops").keys() {
            if !["get", "put", "post", "delete"].contains(&method.as_str()) {
                continue;
            }
            let concrete = path.replace("{name}", "no-such-user");
            // Probe with an empty JSON body; the route must exist for the method.
            let (status, body) = server.admin(&method.to_uppercase(), &concrete, None);
            assert!(
                status != 405
                    && status != 501
                    && !(status == 404
                        && body["error"]["code"] == "not_found"
                        && !concrete.contains("no-such")),
                "{method} {path} is documented but not routed ({status} {body})"
            );
        }
    }
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut server = start();
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn idle_connections_do_not_block_a_working_client_and_limits_hold() {
    let server = start();
    // A slowloris client that never finishes its header.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", server.http_ports[0])).expect("connect");
    use std::io::Write;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").expect("write");
    assert!(raw_get(server.http_ports[0], "/healthz").expect("served").starts_with("HTTP/1.1 200"));
}

#[test]
fn a_body_that_stops_arriving_is_cut_off() {
    use std::io::{Read, Write};
    let server = start();
    let mut s = raw_connection(&server, 40);
    write!(
        s,
        "PUT /api/v1/webserver HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"http_",
        admin_basic()
    )
    .expect("write");
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(35), "cut off after the 20 s body limit");
    // Nothing changed, and the server still serves.
    let (_, settings) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(settings["unsaved_changes"], false);
}

#[test]
fn a_returning_tls_client_resumes_its_session_by_ticket() {
    // The ticketer is made at the first handshake or just after start (not
    // before the listeners open): a ticket from the first connection must
    // resume the second.
    let server = start();
    let dir = tempfile::tempdir().expect("tmp");
    let session = dir.path().join("session.pem");
    let script = |extra: &str| {
        format!(
            "printf 'GET /healthz HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' | \
             timeout 20 openssl s_client -connect 127.0.0.1:{} -tls1_3 -ign_eof {extra} 2>&1",
            server.https_port
        )
    };
    let first = run("sh", &["-c", &script(&format!("-sess_out {}", session.display()))]).1;
    assert!(first.contains("New, TLSv1.3"), "{first}");
    assert!(first.contains("HTTP/1.1 200"), "{first}");
    let second = run("sh", &["-c", &script(&format!("-sess_in {}", session.display()))]).1;
    assert!(second.contains("Reused, TLSv1.3"), "no resumption:\n{second}");
}
