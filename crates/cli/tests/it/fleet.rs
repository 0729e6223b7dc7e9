//! Fleets against the real binary and the real engines (started here, on
//! free loopback ports, with private configurations): Prometheus scrapes
//! `/metrics` with an administrator's Basic credentials, promtool reads the
//! exposition, rsyslogd receives the event log over UDP, TCP and TLS, and
//! the CrowdSec LAPI's decisions (from cscli, and from another device's
//! block) are refused at the connection.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_testkit::engines::{Engine, LIMIT, Lapi, Rsyslog, free_udp_port, need};
use portcullis_testkit::{ADMIN_PASSWORD, TestCa, TestServer, curl_status, free_port, wait_until};
use serde_json::{Value, json};

use crate::bin;

fn events(server: &TestServer, kind: &str) -> Vec<Value> {
    let (_, body) = server.admin("GET", "/api/v1/events?limit=1000", None);
    body["events"].as_array().expect("events").iter().filter(|e| e["kind"] == kind).cloned().collect()
}

/// Intrusion detection blocks after 5 failed logins.
fn blocking(server: &TestServer) {
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    s["intrusion_detection"]["block_ip"] = json!(true);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    assert_eq!(server.admin("PUT", "/api/v1/access-control", Some(json!({"enabled": true}))).0, 200);
}

/// Fails logins from `source` until it is refused at the connection.
fn attack(server: &TestServer, source: &str) {
    let url = server.url("/api/v1/webserver");
    let refused = wait_until(LIMIT, || curl_status(source, &url, &["-u", "admin:wrong-password"]) == 0);
    assert!(refused, "{source} was never blocked");
}

#[test]
fn metrics_answer_an_administrators_basic_credentials_only_and_promtool_finds_them_clean() {
    let server = TestServer::start(&bin()).expect("start");
    let url = server.url("/metrics");
    assert_eq!(curl_status("127.0.0.1", &url, &[]), 401, "anonymous is refused");
    assert_eq!(curl_status("127.0.0.1", &url, &["-u", "admin:wrong"]), 401);
    let (status, _) = server.admin(
        "PUT",
        "/api/v1/users/viewer",
        Some(json!({"password": "viewer-password-1", "group": "users"})),
    );
    assert!(status == 200 || status == 201, "{status}");
    assert_eq!(
        curl_status("127.0.0.1", &url, &["-u", "viewer:viewer-password-1"]),
        403,
        "a user is not an admin"
    );
    let (status, content_type, text) = server.admin_text("/metrics");
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for name in [
        "portcullis_failed_logins_total",
        "portcullis_clients_blocked{origin=\"local\"} 0",
        "portcullis_clients_blocked{origin=\"crowdsec\"} 0",
        "portcullis_unsaved_changes 0",
        "portcullis_certificate_not_after_timestamp_seconds",
        "portcullis_build_info{",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    need("promtool").expect("promtool");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Requests by listener and status class, TLS handshakes, open connections.
    let https = format!("https://127.0.0.1:{}/healthz", server.https_port);
    assert_eq!(curl_status("127.0.0.1", &https, &[]), 200);
    assert_eq!(curl_status("127.0.0.1", &https, &["--tls-max", "1.1"]), 0, "TLS 1.1 is refused");
    let text = server.admin_text("/metrics").2;
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
    };
    let http = server.http_ports[0];
    assert!(
        value(&format!("portcullis_http_requests_total{{listener=\"http:{http}\",class=\"4xx\"}}")) >= 3.0
    );
    assert!(
        value(&format!("portcullis_http_requests_total{{listener=\"http:{http}\",class=\"2xx\"}}")) >= 1.0
    );
    assert!(
        value(&format!(
            "portcullis_http_requests_total{{listener=\"https:{}\",class=\"2xx\"}}",
            server.https_port
        )) >= 1.0
    );
    assert!(value("portcullis_tls_handshakes_total{result=\"completed\"}") >= 1.0);
    assert!(value("portcullis_tls_handshakes_total{result=\"failed\"}") >= 1.0);
    assert!(
        value(&format!("portcullis_connections_open{{listener=\"http:{http}\"}}")) >= 1.0,
        "this scrape's own"
    );
    // A Set shows as unsaved.
    assert_eq!(server.admin("PUT", "/api/v1/access-control", Some(json!({"enabled": true}))).0, 200);
    assert!(server.admin_text("/metrics").2.contains("portcullis_unsaved_changes 1"));
}

/// The value Prometheus's query API gives for `query` (URL-encoded) now.
fn prometheus_value(port: u16, query: &str) -> Option<String> {
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query={query}");
    let body =
        reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(5)).send().ok()?.text().ok()?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str().map(str::to_string)
}

#[test]
fn prometheus_scrapes_the_binary_with_basic_credentials_and_a_token_and_sees_an_attacker_blocked() {
    need("prometheus").expect("prometheus");
    let server = TestServer::start(&bin()).expect("start");
    blocking(&server);
    let dir = tempfile::tempdir().expect("dir");
    let web = free_port();
    let password = dir.path().join("password");
    std::fs::write(&password, ADMIN_PASSWORD).expect("write");
    // The second job scrapes with a read-only API token (Prometheus's `authorization`).
    let (status, made) =
        server.admin("POST", "/api/v1/tokens", Some(json!({"name": "prometheus", "scope": "read-only"})));
    assert_eq!(status, 201, "{made}");
    let token = dir.path().join("token");
    std::fs::write(&token, made["token"].as_str().expect("secret")).expect("write");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: device\n    basic_auth:\n      username: admin\n      password_file: {}\n    \
             static_configs:\n      - targets: ['127.0.0.1:{}']\n\
             \x20 - job_name: device-token\n    authorization:\n      type: Bearer\n      credentials_file: {}\n    \
             static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            password.display(),
            server.http_ports[0],
            token.display(),
            server.http_ports[0]
        ),
    )
    .expect("write");
    let _prometheus = Engine::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{web}")),
        dir.path().join("prometheus.log"),
    )
    .expect("prometheus");
    let query = "portcullis_clients_blocked%7Borigin%3D%22local%22%7D";
    let scraped =
        wait_until(Duration::from_secs(60), || prometheus_value(web, query).as_deref() == Some("0"));
    assert!(
        scraped,
        "no scrape: {}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );
    // Two jobs scrape the device (Basic and the token), each on its own
    // schedule: the series above may come from either, so each job's first
    // scrape is awaited.
    let basic_job = "up%7Bjob%3D%22device%22%7D";
    assert!(
        wait_until(LIMIT, || prometheus_value(web, basic_job).as_deref() == Some("1")),
        "the Basic credentials' scrape"
    );
    let token_job = "up%7Bjob%3D%22device-token%22%7D";
    assert!(
        wait_until(LIMIT, || prometheus_value(web, token_job).as_deref() == Some("1")),
        "the token's scrape"
    );
    attack(&server, "127.0.0.2");
    assert!(
        wait_until(LIMIT, || prometheus_value(web, query).as_deref() == Some("1")),
        "the block never showed"
    );
    let failed = prometheus_value(web, "portcullis_failed_logins_total").and_then(|v| v.parse::<f64>().ok());
    assert!(failed.is_some_and(|f| f >= 5.0), "{failed:?}");
}

#[test]
fn rsyslog_receives_the_binarys_events_with_the_kind_as_msgid_over_udp_tcp_and_tls() {
    need("rsyslogd").expect("rsyslogd");
    let dir = tempfile::tempdir().expect("dir");
    // A CA for the TLS collector, and the collector's certificate for 127.0.0.1's name.
    let ca = TestCa::new(&dir.path().join("ca")).expect("ca");
    let (chain, key) =
        ca.issue("localhost", "collector", &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]).expect("leaf");
    let (udp, tcp, tls) = (free_udp_port(), free_port(), free_port());
    let globals = format!(
        "DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{}\" \
         DefaultNetstreamDriverCertFile=\"{chain}\" DefaultNetstreamDriverKeyFile=\"{key}\"",
        ca.path("root.pem")
    );
    let inputs = format!(
        "module(load=\"imudp\")\nmodule(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n\
         input(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\" name=\"plain\" streamDriver.mode=\"0\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tls}\" name=\"tls\")"
    );
    let rsyslog = Rsyslog::start(dir.path(), &inputs, &globals).expect("rsyslogd");

    let server = TestServer::start(&bin()).expect("start");
    let root = std::fs::read_to_string(ca.path("root.pem")).expect("root");
    let settings = json!({"enabled": true, "destinations": [
        {"address": format!("127.0.0.1:{udp}"), "transport": "udp"},
        {"address": format!("127.0.0.1:{tcp}"), "transport": "tcp"},
        {"address": format!("127.0.0.1:{tls}"), "transport": "tls", "ca_pem": root, "server_name": "localhost"},
    ]});
    let (status, body) = server.admin("PUT", "/api/v1/syslog", Some(settings));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["destinations"][2]["transport"], "tls");
    let (status, _) = server.admin("POST", "/api/v1/config/store", None);
    assert_eq!(status, 200);
    // Each input got the store event, its kind as MSGID.
    let got = |input: &str| {
        rsyslog.received().iter().any(|l| l.starts_with(input) && l.contains(" config_stored "))
    };
    let all = wait_until(LIMIT, || got("imudp") && got("plain") && got("tls"));
    assert!(all, "received:\n{}", rsyslog.received().join("\n"));

    // Bad input changes nothing: a TLS setting on a UDP destination.
    let (status, body) = server.admin(
        "PUT",
        "/api/v1/syslog",
        Some(json!({"enabled": true, "destinations": [{"address": "127.0.0.1:514", "transport": "udp", "server_name": "x"}]})),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "tls_only");
    assert_eq!(body["error"]["field"], "syslog.destinations[0].server_name");
    assert_eq!(
        server.admin("GET", "/api/v1/syslog", None).1["destinations"].as_array().map(Vec::len),
        Some(3)
    );
}

/// The addresses under a CrowdSec ban in `/api/v1/blocked`.
fn bans(server: &TestServer) -> Vec<String> {
    let (_, blocked) = server.admin("GET", "/api/v1/blocked", None);
    blocked
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|b| b["origin"] == "crowdsec")
                .filter_map(|b| b["address"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The CrowdSec settings of a bouncer of `lapi` polling every second.
fn bouncing(lapi: &Lapi, key: &str) -> Value {
    json!({"enabled": true, "lapi_url": format!("http://127.0.0.1:{}", lapi.port), "bouncer_key": key,
        "poll_interval_seconds": 1})
}

#[test]
fn a_decision_added_by_cscli_makes_the_device_refuse_that_source_within_a_poll() {
    let dir = tempfile::tempdir().expect("dir");
    let lapi = Lapi::start(dir.path()).expect("lapi");
    let key = lapi.bouncer_key("camera").expect("key");
    let server = TestServer::start(&bin()).expect("start");
    let (status, body) = server.admin("PUT", "/api/v1/crowdsec", Some(bouncing(&lapi, &key)));
    assert_eq!(status, 200, "{body}");
    assert!(body.get("bouncer_key").is_none_or(Value::is_null), "the key is never read back: {body}");
    assert!(!server.admin("GET", "/api/v1/crowdsec", None).1.to_string().contains(&key));
    let url = server.url("/healthz");
    assert_eq!(curl_status("127.0.0.3", &url, &[]), 200);

    lapi.cscli(&["decisions", "add", "--ip", "127.0.0.3", "--duration", "1h"]).expect("decision");
    assert!(wait_until(LIMIT, || curl_status("127.0.0.3", &url, &[]) == 0), "127.0.0.3 still served");
    assert_eq!(curl_status("127.0.0.1", &url, &[]), 200, "others are served");
    let https = format!("https://127.0.0.1:{}/healthz", server.https_port);
    assert_eq!(curl_status("127.0.0.3", &https, &[]), 0, "refused before TLS too");
    let (_, blocked) = server.admin("GET", "/api/v1/blocked", None);
    let ban = blocked.as_array().expect("list").iter().find(|b| b["origin"] == "crowdsec").cloned();
    let ban = ban.unwrap_or_else(|| panic!("no CrowdSec entry: {blocked}"));
    assert_eq!(ban["address"], "127.0.0.3");
    assert!(ban["until"].is_string() && ban["decided_by"] == "cscli", "{ban}");

    // Behind a trusted proxy: the client it names is refused per request
    // (403), and a ban on the proxy itself does not cut its other clients off.
    let (status, body) = server.admin(
        "PUT",
        "/api/v1/access-control",
        Some(json!({"enabled": true, "trusted_proxies": ["127.0.0.6"]})),
    );
    assert_eq!(status, 200, "{body}");
    lapi.cscli(&["decisions", "add", "--ip", "127.0.0.6", "--duration", "1h"]).expect("decision");
    let via_proxy =
        |client: &str| curl_status("127.0.0.6", &url, &["-H", &format!("X-Forwarded-For: {client}")]);
    assert!(
        wait_until(LIMIT, || bans(&server).contains(&"127.0.0.6".to_string())),
        "the proxy's ban never came"
    );
    assert_eq!(via_proxy("127.0.0.3"), 403);
    assert_eq!(via_proxy("198.51.100.9"), 200);

    // Deleted: served again at the next poll.
    lapi.cscli(&["decisions", "delete", "--ip", "127.0.0.3"]).expect("delete");
    assert!(wait_until(LIMIT, || curl_status("127.0.0.3", &url, &[]) == 200), "127.0.0.3 still refused");
    // Stored, the key is in the data folder (mode 0600) and `config show` leaves it out.
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
    let data = server.data_dir();
    let (code, out, err) = portcullis_testkit::run(
        bin().to_str().expect("utf8"),
        &["config", "show", "--data-dir", data.to_str().expect("utf8")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"lapi_url\"") && !out.contains(&key), "{out}");
    assert!(std::fs::read_to_string(data.join("config.json")).expect("config").contains(&key));
    // Switched off: no polling, nothing of CrowdSec enforced.
    let mut off = bouncing(&lapi, "");
    off["enabled"] = json!(false);
    assert_eq!(server.admin("PUT", "/api/v1/crowdsec", Some(off)).0, 200);
}

#[test]
fn an_attacker_blocked_by_one_device_is_refused_by_a_second_that_only_bounces() {
    let dir = tempfile::tempdir().expect("dir");
    let lapi = Lapi::start(dir.path()).expect("lapi");
    lapi.cscli(&["machines", "add", "cam-1", "--password", "cam-1-secret", "-f", "/dev/null"])
        .expect("machine");
    let first = TestServer::start(&bin()).expect("start");
    blocking(&first);
    let mut signalling = bouncing(&lapi, &lapi.bouncer_key("cam-1").expect("key"));
    signalling["machine_id"] = json!("cam-1");
    signalling["machine_password"] = json!("cam-1-secret");
    let (status, body) = first.admin("PUT", "/api/v1/crowdsec", Some(signalling));
    assert_eq!(status, 200, "{body}");
    assert!(body.get("machine_password").is_none_or(Value::is_null), "{body}");
    let second = TestServer::start(&bin()).expect("start");
    let (status, body) = second.admin(
        "PUT",
        "/api/v1/crowdsec",
        Some(bouncing(&lapi, &lapi.bouncer_key("cam-2").expect("key"))),
    );
    assert_eq!(status, 200, "{body}");
    let url = second.url("/healthz");
    assert_eq!(curl_status("127.0.0.4", &url, &[]), 200);

    attack(&first, "127.0.0.4");
    assert_eq!(events(&first, "client_blocked").len(), 1);
    assert!(
        wait_until(LIMIT, || curl_status("127.0.0.4", &url, &[]) == 0),
        "the second device still serves it"
    );
    assert_eq!(curl_status("127.0.0.5", &url, &[]), 200);
    assert!(events(&first, "crowdsec_alert_failed").is_empty());
}

#[test]
fn a_syslog_collector_down_then_back_gets_the_queue_and_the_drops_are_in_the_event_log_and_metrics() {
    need("rsyslogd").expect("rsyslogd");
    let dir = tempfile::tempdir().expect("dir");
    let tcp = free_port();
    let inputs =
        format!("module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\")");
    let mut rsyslog = Rsyslog::start(dir.path(), &inputs, "").expect("rsyslogd");
    let server = TestServer::start(&bin()).expect("start");
    let settings = json!({"enabled": true, "queue_capacity": 10,
        "destinations": [{"address": format!("127.0.0.1:{tcp}"), "transport": "tcp"}]});
    assert_eq!(server.admin("PUT", "/api/v1/syslog", Some(settings)).0, 200);
    let changed = |lines: &[String]| lines.iter().filter(|l| l.contains(" config_changed ")).count();
    assert!(wait_until(LIMIT, || changed(&rsyslog.received()) == 1), "{:?}", rsyslog.received());

    rsyslog.stop();
    // 15 changes while the collector is down: its queue keeps the last 10.
    for i in 0..15 {
        let body = json!({"enabled": i % 2 == 0});
        assert_eq!(server.admin("PUT", "/api/v1/access-control", Some(body)).0, 200);
    }
    let queued = |server: &TestServer| {
        server
            .admin_text("/metrics")
            .2
            .lines()
            .any(|l| l.starts_with("portcullis_syslog_queued_messages{") && l.trim_end().ends_with(" 10"))
    };
    assert!(wait_until(LIMIT, || queued(&server)), "{}", server.admin_text("/metrics").2);
    assert!(events(&server, "syslog_dropped").is_empty(), "said once messages flow again");

    rsyslog.restart().expect("restart");
    assert!(wait_until(LIMIT, || !events(&server, "syslog_dropped").is_empty()), "no syslog_dropped event");
    let dropped = events(&server, "syslog_dropped");
    assert_eq!(dropped[0]["details"]["dropped"], 5, "{dropped:?}");
    let metrics = server.admin_text("/metrics").2;
    assert!(
        metrics.lines().any(|l| l.starts_with("portcullis_syslog_messages_total{")
            && l.contains("result=\"dropped\"")
            && l.trim_end().ends_with(" 5")),
        "{metrics}"
    );
    // The 10 kept arrive, then the drop itself.
    assert!(
        wait_until(LIMIT, || {
            let lines = rsyslog.received();
            changed(&lines) == 11 && lines.iter().any(|l| l.contains(" syslog_dropped "))
        }),
        "{:?}",
        rsyslog.received()
    );
}
