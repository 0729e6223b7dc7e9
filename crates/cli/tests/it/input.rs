//! Operator input the API must not take as given (issue 17): a password
//! change without the current password, and JSON bodies that name a key twice.

use portcullis_testkit::{ADMIN_PASSWORD, TestServer};
use serde_json::{Value, json};

use crate::bin;

fn events(server: &TestServer, kind: &str) -> Vec<Value> {
    let (_, body) = server.admin("GET", "/api/v1/events?limit=1000", None);
    body["events"].as_array().expect("events").iter().filter(|e| e["kind"] == kind).cloned().collect()
}

/// Logs in by the UI's form from `source`; returns the session cookie and CSRF token.
fn ui_login(server: &TestServer, user: &str, password: &str) -> (reqwest::blocking::Client, String) {
    let client = reqwest::blocking::Client::builder()
        .local_address(server.source)
        .cookie_store(true)
        .build()
        .expect("client");
    let resp = client
        .post(server.url("/api/v1/session"))
        .json(&json!({"user": user, "password": password}))
        .send()
        .expect("login");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().expect("json");
    (client, body["csrf_token"].as_str().expect("csrf").to_string())
}

#[test]
fn changing_ones_own_password_needs_the_current_one() {
    let mut server = TestServer::start(&bin()).expect("start");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    let op = json!({"group": "users", "password": "op-password-1"});
    assert_eq!(server.admin("PUT", "/api/v1/users/op", Some(op)).0, 200);

    // A session left open (or a stolen cookie) cannot take the account over.
    server.source = "127.0.0.2".parse().expect("ip");
    let (client, csrf) = ui_login(&server, "op", "op-password-1");
    let url = server.url("/api/v1/users/op");
    let put = |body: Value| {
        let resp = client.put(&url).header("x-csrf-token", &csrf).json(&body).send().expect("put");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().unwrap_or(Value::Null))
    };
    let (status, err) = put(json!({"password": "taken-over-1"}));
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        (err["error"]["code"].as_str(), err["error"]["field"].as_str()),
        (Some("required"), Some("current_password"))
    );
    let (status, err) = put(json!({"password": "taken-over-1", "current_password": "a-guess"}));
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        (err["error"]["code"].as_str(), err["error"]["field"].as_str()),
        (Some("current_password_wrong"), Some("current_password"))
    );
    // The wrong one counted as a failed login of op from its address, and nothing changed.
    let (_, log) = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{}/api/v1/logfile", server.http_ports[0]))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .map(|r| (r.status(), r.json::<Value>().expect("json")))
        .expect("logfile");
    let failed: Vec<&Value> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["client_ip"] == "127.0.0.2" && e["user"] == "op" && e["authorized"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert_eq!(
        (failed[0]["count"].as_u64(), failed[0]["last_url"].as_str()),
        (Some(1), Some("/api/v1/users/op"))
    );
    server.source = "127.0.0.1".parse().expect("ip");
    assert_eq!(server.request_as("op", "op-password-1", "GET", "/api/v1/webserver", None).0, 200);
    assert_eq!(server.request_as("op", "taken-over-1", "GET", "/api/v1/webserver", None).0, 401);
    server.source = "127.0.0.2".parse().expect("ip");
    // Guessing the current password this way is guessing a password: it alerts at the threshold.
    for i in 0..5 {
        assert_eq!(put(json!({"password": "taken-over-1", "current_password": format!("guess-{i}")})).0, 400);
    }
    server.source = "127.0.0.1".parse().expect("ip");
    let alerts = events(&server, "intrusion_alert");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["actor"]["client_ip"], "127.0.0.2");
    // With the right one, the change is made; the old password stops working.
    server.source = "127.0.0.2".parse().expect("ip");
    let (status, body) = put(json!({"password": "op-password-2", "current_password": "op-password-1"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.request_as("op", "op-password-2", "GET", "/api/v1/webserver", None).0, 200);
    assert_eq!(server.request_as("op", "op-password-1", "GET", "/api/v1/webserver", None).0, 401);
    // An admin sets another account's password without knowing it; its own needs the current one.
    server.source = "127.0.0.1".parse().expect("ip");
    assert_eq!(server.admin("PUT", "/api/v1/users/op", Some(json!({"password": "op-password-3"}))).0, 200);
    let (status, err) =
        server.admin("PUT", "/api/v1/users/admin", Some(json!({"password": "new-admin-password"})));
    assert_eq!((status, err["error"]["field"].as_str()), (400, Some("current_password")));
    // A group change alone needs no password.
    let (status, _) = server.admin("PUT", "/api/v1/users/op", Some(json!({"group": "admins"})));
    assert_eq!(status, 200);
}

#[test]
fn json_bodies_that_name_a_key_twice_are_refused() {
    let server = TestServer::start(&bin()).expect("start");
    let (_, before) = server.admin("GET", "/api/v1/webserver", None);
    let send = |method: &str, path: &str, body: &str| {
        let resp = server
            .client()
            .request(reqwest::Method::from_bytes(method.as_bytes()).expect("method"), server.url(path))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .expect("send");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().unwrap_or(Value::Null))
    };
    let cases = [
        ("PUT", "/api/v1/webserver", r#"{"http_enabled": true, "http_enabled": false}"#, "http_enabled"),
        (
            "PUT",
            "/api/v1/webserver",
            r#"{"intrusion_detection": {"block_ip": true, "block_ip": false}}"#,
            "intrusion_detection.block_ip",
        ),
        (
            "PUT",
            "/api/v1/access-control",
            r#"{"enabled": true, "rules": [{"kind": "deny", "source": "192.0.2.1", "source": "192.0.2.2"}]}"#,
            "rules[0].source",
        ),
        ("PUT", "/api/v1/authentication", r#"{"digest": false, "digest": true}"#, "digest"),
        (
            "PUT",
            "/api/v1/users/op",
            r#"{"password": "first-password", "password": "other-password"}"#,
            "password",
        ),
        (
            "PUT",
            "/api/v1/profiles/ip-notify/p",
            r#"{"destinations": ["127.0.0.1:9"], "protocol": "tcp", "protocol": "http"}"#,
            "protocol",
        ),
        ("POST", "/api/v1/session", r#"{"user": "admin", "user": "other", "password": "x"}"#, "user"),
    ];
    for (method, path, body, field) in cases {
        let (status, err) = send(method, path, body);
        assert_eq!(status, 400, "{path}: {err}");
        assert_eq!(err["error"]["code"], "duplicate_key", "{path}: {err}");
        assert_eq!(err["error"]["field"], field, "{path}: {err}");
    }
    // Nothing changed.
    assert_eq!(server.admin("GET", "/api/v1/webserver", None).1, before);
    assert_eq!(server.admin("GET", "/api/v1/access-control", None).1["enabled"], false);
    assert_eq!(server.admin("GET", "/api/v1/authentication", None).1["digest"], false);
    assert_eq!(server.admin("GET", "/api/v1/users/op", None).0, 404);
    assert_eq!(server.admin("GET", "/api/v1/profiles", None).1["ip_notify"], json!({}));
    // The same bodies with each key once are taken.
    assert_eq!(send("PUT", "/api/v1/authentication", r#"{"digest": true}"#).0, 200);
}
