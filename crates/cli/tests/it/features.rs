//! Build features: what this build carries is listed by `--version` and
//! `GET /api/v1/build` and works; what it leaves out answers 501
//! `feature_not_built` naming the feature (never a 404) and changes nothing.
//! Every test here runs in every feature set (`scripts/test` runs them for
//! the default, minimal and device sets), each side checked by `cfg!`.

use portcullis_testkit::{TestServer, run};
use serde_json::{Value, json};

use crate::bin;

/// The optional features and whether this test build has them (the binary's
/// features are the test crate's).
const FEATURES: [(&str, bool); 14] = [
    ("ui", cfg!(feature = "ui")),
    ("acme", cfg!(feature = "acme")),
    ("email", cfg!(feature = "email")),
    ("ip-notify", cfg!(feature = "ip-notify")),
    ("sip", cfg!(feature = "sip")),
    ("digest", cfg!(feature = "digest")),
    ("http2", cfg!(feature = "http2")),
    ("openapi", cfg!(feature = "openapi")),
    ("webroot", cfg!(feature = "webroot")),
    ("metrics", cfg!(feature = "metrics")),
    ("syslog", cfg!(feature = "syslog")),
    ("crowdsec", cfg!(feature = "crowdsec")),
    ("backup", cfg!(feature = "backup")),
    ("totp", cfg!(feature = "totp")),
];

const PROVIDER: &str = if cfg!(feature = "ring") { "ring" } else { "aws-lc-rs" };

fn built(name: &str) -> bool {
    FEATURES.iter().any(|(n, on)| *n == name && *on)
}

/// Asserts a 501 `feature_not_built` naming `feature`.
fn assert_not_built(what: &str, status: u16, body: &Value, feature: &str) {
    assert_eq!(status, 501, "{what}: {body}");
    assert_eq!(body["error"]["code"], "feature_not_built", "{what}: {body}");
    assert_eq!(body["error"]["field"], feature, "{what}: {body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| m.contains(&format!("\"{feature}\""))),
        "{body}"
    );
}

/// Status and JSON body (Null if not JSON) of a GET without credentials.
fn anonymous_get(server: &TestServer, path: &str) -> (u16, Value, String) {
    let r = server.client().get(server.url(path)).send().expect("get");
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = r.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), ct)
}

#[test]
fn the_version_and_the_build_information_list_the_features() {
    let on: Vec<&str> = FEATURES.iter().filter(|(_, b)| *b).map(|(n, _)| *n).collect();
    let off: Vec<&str> = FEATURES.iter().filter(|(_, b)| !*b).map(|(n, _)| *n).collect();
    let (code, out, err) = run(bin().to_str().expect("utf8"), &["--version"]);
    assert_eq!(code, 0, "{err}");
    let listed = if on.is_empty() { "none".to_string() } else { on.join(", ") };
    assert!(out.contains(&format!("(features: {listed}; crypto: {PROVIDER})")), "{out}");

    let server = TestServer::start(&bin()).expect("server starts");
    let (status, info) = server.admin("GET", "/api/v1/build", None);
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["features"], json!(on), "{info}");
    assert_eq!(info["absent_features"], json!(off), "{info}");
    assert_eq!(info["crypto_provider"], PROVIDER);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    // Like the rest of the API, only for a logged-in user.
    assert_eq!(anonymous_get(&server, "/api/v1/build").0, 401);
}

#[test]
fn what_is_not_built_answers_feature_not_built_and_what_is_built_works() {
    let server = TestServer::start(&bin()).expect("server starts");

    // The web UI, and `/` (no webroot given) that leads to it.
    let (status, body, ct) = anonymous_get(&server, "/admin/");
    if built("ui") {
        assert_eq!(status, 200);
        assert!(ct.starts_with("text/html"), "{ct}");
    } else {
        assert_not_built("GET /admin/", status, &body, "ui");
        let (status, body, _) = anonymous_get(&server, "/admin/assets/app.js");
        assert_not_built("GET /admin/assets/app.js", status, &body, "ui");
        let (status, body, _) = anonymous_get(&server, "/");
        assert_not_built("GET /", status, &body, "ui");
    }

    // The OpenAPI document.
    let (status, body, _) = anonymous_get(&server, "/api/v1/openapi.json");
    if built("openapi") {
        assert_eq!(status, 200);
        let paths = body["paths"].as_object().expect("paths");
        assert_eq!(paths.contains_key("/api/v1/certificate/acme"), built("acme"));
        assert_eq!(paths.contains_key("/api/v1/webroot"), built("webroot"));
        assert_eq!(paths.contains_key("/metrics"), built("metrics"));
        assert_eq!(paths.contains_key("/api/v1/syslog"), built("syslog"));
        assert_eq!(paths.contains_key("/api/v1/crowdsec"), built("crowdsec"));
        assert_eq!(paths.contains_key("/api/v1/config/export"), built("backup"));
        assert_eq!(paths.contains_key("/api/v1/config/import"), built("backup"));
        assert_eq!(paths.contains_key("/api/v1/users/{name}/totp"), built("totp"));
        assert!(paths.contains_key("/api/v1/build"));
    } else {
        assert_not_built("GET /api/v1/openapi.json", status, &body, "openapi");
    }

    // ACME: its API (after the login, like the rest) and the http-01 path.
    assert_eq!(anonymous_get(&server, "/api/v1/certificate/acme").0, 401);
    let (status, body) = server.admin("GET", "/api/v1/certificate/acme", None);
    let (enrol, enrol_body) = server.admin("POST", "/api/v1/certificate/acme/enrol", None);
    let (challenge, challenge_body, _) = anonymous_get(&server, "/.well-known/acme-challenge/token");
    if built("acme") {
        assert_eq!(status, 200, "{body}");
        assert_eq!(challenge, 404, "no challenge pending: {challenge_body}");
    } else {
        assert_not_built("GET acme", status, &body, "acme");
        assert_not_built("POST acme/enrol", enrol, &enrol_body, "acme");
        assert_not_built("http-01", challenge, &challenge_body, "acme");
    }

    // The webroot's settings.
    let (status, body) = server.admin("GET", "/api/v1/webroot", None);
    if built("webroot") {
        assert_eq!(status, 200, "{body}");
    } else {
        assert_not_built("GET /api/v1/webroot", status, &body, "webroot");
        let (status, body) = server.admin("PUT", "/api/v1/webroot", Some(json!({"login_required": true})));
        assert_not_built("PUT /api/v1/webroot", status, &body, "webroot");
    }

    // The fleet integrations: /metrics and the syslog and CrowdSec settings.
    let (status, body, _) = anonymous_get(&server, "/metrics");
    assert_eq!(status, 401, "only with a login, built or not: {body}");
    let (status, body) = server.admin("GET", "/metrics", None);
    if built("metrics") {
        assert_eq!(status, 200);
    } else {
        assert_not_built("GET /metrics", status, &body, "metrics");
    }
    for (feature, path) in [("syslog", "/api/v1/syslog"), ("crowdsec", "/api/v1/crowdsec")] {
        let (status, body) = server.admin("GET", path, None);
        let (put, put_body) = server.admin("PUT", path, Some(json!({"enabled": false})));
        if built(feature) {
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["enabled"], false, "off by default: {body}");
            assert_eq!(put, 200, "{put_body}");
        } else {
            assert_not_built(path, status, &body, feature);
            assert_not_built(path, put, &put_body, feature);
        }
    }

    // Configuration backups: export (import is a multipart upload, and the
    // refusal comes before its body is read either way).
    let (status, body) =
        server.admin("POST", "/api/v1/config/export", Some(json!({"passphrase": "correct horse battery"})));
    if built("backup") {
        assert_eq!(status, 200, "{body}");
    } else {
        assert_not_built("POST /api/v1/config/export", status, &body, "backup");
        let (status, body) = server.admin("POST", "/api/v1/config/import", None);
        assert_not_built("POST /api/v1/config/import", status, &body, "backup");
    }

    // Two-step verification: starting one's own enrolment.
    let (status, body) = server.admin("POST", "/api/v1/users/admin/totp", None);
    if built("totp") {
        assert_eq!(status, 200, "{body}");
    } else {
        assert_not_built("POST /api/v1/users/admin/totp", status, &body, "totp");
        let (status, body) =
            server.admin("POST", "/api/v1/users/admin/totp/confirm", Some(json!({"code": "123456"})));
        assert_not_built("POST .../totp/confirm", status, &body, "totp");
    }

    // Digest: switching it on.
    let (status, body) = server.admin("PUT", "/api/v1/authentication", Some(json!({"digest": true})));
    if built("digest") {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["digest"], true);
    } else {
        assert_not_built("PUT authentication", status, &body, "digest");
        let (_, auth) = server.admin("GET", "/api/v1/authentication", None);
        assert_eq!(auth["digest"], false, "nothing changed: {auth}");
        // Off stays settable.
        let (status, body) = server.admin("PUT", "/api/v1/authentication", Some(json!({"digest": false})));
        assert_eq!(status, 200, "{body}");
    }

    // The notification channels: a valid profile of each kind.
    let profiles = [
        (
            "email",
            "email",
            json!({"server": "127.0.0.1", "port": 2525, "security": "none",
                "from": "camera@example.com", "to": ["ops@example.com"]}),
        ),
        ("ip-notify", "ip-notify", json!({"destinations": ["127.0.0.1:9"], "protocol": "tcp"})),
        ("phone", "sip", json!({"uri": "sip:alarm@127.0.0.1:5060", "transport": "udp"})),
    ];
    for (kind, feature, profile) in profiles {
        let path = format!("/api/v1/profiles/{kind}/probe");
        let (status, body) = server.admin("PUT", &path, Some(profile));
        let (test, test_body) = server.admin("POST", &format!("{path}/test"), None);
        if built(feature) {
            assert_eq!(status, 200, "{kind}: {body}");
        } else {
            assert_not_built(&format!("PUT {path}"), status, &body, feature);
            assert_not_built(&format!("POST {path}/test"), test, &test_body, feature);
            let (status, _) = server.admin("GET", &path, None);
            assert_eq!(status, 404, "nothing was stored for {kind}");
        }
    }

    // HTTP/2 is offered by ALPN only when built.
    let (code, out, err) = run(
        "curl",
        &["-sk", "--http2", "-o", "/dev/null", "-w", "%{http_version}", &server.https_url("/healthz")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, if built("http2") { "2" } else { "1.1" });
}

/// A webroot asked of a build without it: the server does not start, and
/// says why in one line.
#[cfg(not(feature = "webroot"))]
#[test]
fn a_webroot_needs_the_webroot_feature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let www = dir.path().join("www");
    std::fs::create_dir(&www).expect("mkdir");
    let (http, https) =
        (portcullis_testkit::free_port().to_string(), portcullis_testkit::free_port().to_string());
    let data = dir.path().join("data");
    let (code, _, err) = run(
        "timeout",
        &[
            "30",
            bin().to_str().expect("utf8"),
            "serve",
            "--data-dir",
            data.to_str().expect("utf8"),
            "--http-port",
            &http,
            "--https-port",
            &https,
            "--webroot",
            www.to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not include the \"webroot\" feature"), "{err}");
}

/// `cert acme` in a build without ACME: exit 1 and the feature named.
#[cfg(not(feature = "acme"))]
#[test]
fn the_acme_command_needs_the_acme_feature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = run(
        bin().to_str().expect("utf8"),
        &["cert", "acme", "--data-dir", dir.path().to_str().expect("utf8")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not include the \"acme\" feature"), "{err}");
}

/// `config export|import` in a build without backups: exit 1, the feature
/// named on one line, and no file written.
#[cfg(not(feature = "backup"))]
#[test]
fn the_backup_commands_need_the_backup_feature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = dir.path().join("backup.age");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").expect("write");
    let (data, out, pass) =
        (data.to_str().expect("utf8"), out.to_str().expect("utf8"), pass.to_str().expect("utf8"));
    for args in [
        vec!["config", "export", "--output", out, "--passphrase-file", pass, "--data-dir", data],
        vec!["config", "import", out, "--passphrase-file", pass, "--data-dir", data],
    ] {
        let (code, _, err) = run(bin().to_str().expect("utf8"), &args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("does not include the \"backup\" feature"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert!(!dir.path().join("backup.age").exists());
}

/// `user second-factor-reset` in a build without two-step verification:
/// exit 1, the feature named, on one line.
#[cfg(not(feature = "totp"))]
#[test]
fn the_second_factor_reset_needs_the_totp_feature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = run(
        bin().to_str().expect("utf8"),
        &["user", "second-factor-reset", "admin", "--data-dir", dir.path().to_str().expect("utf8")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not include the \"totp\" feature") && err.lines().count() == 1, "{err}");
}
