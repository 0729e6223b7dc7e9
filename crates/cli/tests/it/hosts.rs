//! The `Host` allow-list (DNS rebinding): the device answers only for its own
//! names; a page on a rebound name gets 421 `host_not_allowed`.

use portcullis_testkit::{ADMIN_PASSWORD, Options, TestServer, run};
use serde_json::{Value, json};

use crate::bin;

/// `curl` as a browser on a rebound name would send it: the name resolved to
/// the server's loopback address (`--resolve`), so `Host` says the name.
/// Status, `Location` and body.
fn get_as(name: &str, port: u16, scheme: &str, path: &str, login: bool) -> (u16, String, String) {
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("{scheme}://{name}:{port}{path}");
    let user = format!("admin:{ADMIN_PASSWORD}");
    let mut args =
        vec!["-sk", "--max-time", "10", "--resolve", &resolve, "-w", "\n%{http_code} %{redirect_url}"];
    if login {
        args.extend(["-u", &user]);
    }
    args.push(&url);
    let (_, out, _) = run("curl", &args);
    let (body, tail) = out.rsplit_once('\n').unwrap_or(("", &out));
    let (status, location) = tail.split_once(' ').unwrap_or((tail, ""));
    (status.parse().unwrap_or(0), location.to_string(), body.to_string())
}

#[track_caller]
fn assert_refused(got: (u16, String, String), what: &str) {
    let (status, location, body) = got;
    assert_eq!(status, 421, "{what}: {body}");
    assert!(location.is_empty(), "{what}: no redirect to a foreign host: {location}");
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(v["error"]["code"], "host_not_allowed", "{what}: {body}");
}

#[test]
fn a_foreign_host_gets_nothing_but_the_devices_names_work() {
    let content = tempfile::tempdir().expect("tempdir");
    std::fs::write(content.path().join("index.html"), "<h1>camera</h1>").expect("write");
    let options = Options {
        extra_args: vec!["--webroot".into(), content.path().display().to_string()],
        ..Default::default()
    };
    let server = TestServer::start_with(&bin(), options).expect("start");
    let (http, https) = (server.http_ports[0], server.https_port);

    // A rebound name: the API (with valid credentials), the OpenAPI document,
    // the UI, the webroot, over HTTP and HTTPS.
    for (port, scheme) in [(http, "http"), (https, "https")] {
        for (path, login) in [
            ("/api/v1/webserver", true),
            ("/api/v1/openapi.json", false),
            ("/admin/", false),
            ("/admin/login", false),
            ("/", false),
            ("/index.html", false),
        ] {
            assert_refused(get_as("rebound.attacker.example", port, scheme, path, login), path);
        }
    }
    // A login attempt through a rebound name is refused before any password work.
    let resolve = format!("rebound.attacker.example:{http}:127.0.0.1");
    let (_, out, _) = run(
        "curl",
        &[
            "-s",
            "--resolve",
            &resolve,
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"username":"admin","password":"guess"}"#,
            "-w",
            "\n%{http_code}",
            &format!("http://rebound.attacker.example:{http}/api/v1/session"),
        ],
    );
    assert!(out.ends_with("421") && out.contains("host_not_allowed"), "{out}");
    // A raw header naming another host, and garbage, are refused too.
    for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "[::1", "a b"] {
        let (_, out, _) = run(
            "curl",
            &[
                "-s",
                "-H",
                &format!("Host: {host}"),
                "-w",
                "\n%{http_code}",
                &server.url("/api/v1/openapi.json"),
            ],
        );
        assert!(out.ends_with("421") || out.ends_with("400"), "{host}: {out}");
        assert!(!out.contains("openapi\""), "{host}: {out}");
    }
    // Probes still work whatever name they use.
    assert_eq!(get_as("probe.example", http, "http", "/healthz", false).0, 200);

    // The device's own names: IP literals, localhost, the certificate's names.
    for name in ["127.0.0.1", "localhost"] {
        let (status, _, body) = get_as(name, http, "http", "/api/v1/webserver", true);
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(get_as(name, https, "https", "/index.html", false).0, 200, "{name}");
    }
    let (_, out, _) = run(
        "curl",
        &["-s", "-H", "Host: [2001:db8::7]:8080", "-w", "\n%{http_code}", &server.url("/index.html")],
    );
    assert!(out.ends_with("200"), "any IP literal: a browser never resolves one: {out}");
    assert_refused(
        get_as("cam.portcullis.test", https, "https", "/index.html", false),
        "before the certificate",
    );
    let (status, body) = server.admin(
        "POST",
        "/api/v1/certificate/generate",
        Some(json!({"common_name": "cam.portcullis.test", "key_type": "ecdsa-p256"})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(get_as("cam.portcullis.test", https, "https", "/index.html", false).0, 200);
    assert_eq!(get_as("CAM.portcullis.test.", http, "http", "/index.html", false).0, 200);

    // Configured names: checked, then allowed at once.
    let (_, mut ws) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(ws["allowed_hosts"], json!([]), "factory default: none");
    ws["allowed_hosts"] = json!(["nvr.example", "https://x.example"]);
    let (status, err) = server.admin("PUT", "/api/v1/webserver", Some(ws.clone()));
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["field"], "allowed_hosts[1]");
    assert_eq!(err["error"]["code"], "invalid_host");
    assert_refused(get_as("nvr.example", http, "http", "/index.html", false), "refused Set changed nothing");
    ws["allowed_hosts"] = json!(["nvr.example", "*.cams.example"]);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(ws)).0, 200);
    assert_eq!(get_as("nvr.example", http, "http", "/index.html", false).0, 200);
    assert_eq!(get_as("front.cams.example", http, "http", "/index.html", false).0, 200);
    assert_refused(get_as("a.b.cams.example", http, "http", "/index.html", false), "one label only");
}

#[test]
fn the_https_redirect_never_names_a_foreign_host() {
    let server = TestServer::start(&bin()).expect("start");
    let (_, mut ws) = server.admin("GET", "/api/v1/webserver", None);
    ws["http_redirect_to_https"] = json!(true);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(ws)).0, 200);
    let http = server.http_ports[0];
    assert_refused(get_as("evil.example", http, "http", "/api/v1/webserver", false), "redirect");
    let (_, out, _) = run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-H",
            "Host: evil.example:1234",
            "-w",
            "%{http_code} %{redirect_url}",
            &server.url("/admin/"),
        ],
    );
    assert_eq!(out, "421 ", "no Location echoing the Host");
    let (status, location, _) = get_as("localhost", http, "http", "/admin/", false);
    assert_eq!((status, location), (308, format!("https://localhost:{}/admin/", server.https_port)));
}
